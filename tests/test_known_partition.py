"""Known-answer tests of the partitioners.

Each partitioner is checked against a reference written here from its documented definition
(module docstrings of ``fedbench.partition`` and the README's "two Dirichlet label-skew conventions"
table), never against a second call of the library:

- exact equality of the client index sets with a direct, loop-by-loop reference fed the same seeded
  generator (``fedbench.rng.numpy_rng(seed, "partition")``, as the simulator seeds it);
- Monte-Carlo: the mean largest-class fraction of the library's partitions, averaged over many seeds,
  against its expected value computed from independent, vectorised Dirichlet draws.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbench.partition import PartitionError, dirichlet_per_class, dirichlet_per_client, iid, partition_stats
from fedbench.rng import numpy_rng

TINY = np.finfo(float).tiny


def stream(seed: int) -> np.random.Generator:
    return numpy_rng(seed, "partition")


def assert_same_parts(got, want):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.dtype == np.int64
        assert g.tolist() == w, f"client {i} differs"


# ---------------------------------------------------------------------------------------------
# References, written from the documented definitions
# ---------------------------------------------------------------------------------------------


def ref_iid(labels, num_clients, rng):
    """``pi = rng.permutation(n)``; client i gets the i-th of N near-equal consecutive chunks."""
    n = len(labels)
    pi = rng.permutation(n).tolist()
    q, r = divmod(n, num_clients)
    parts, start = [], 0
    for i in range(num_clients):
        size = q + (1 if i < r else 0)  # the first n mod N chunks are one longer
        parts.append(sorted(pi[start : start + size]))
        start += size
    return parts


def ref_dirichlet_class(labels, num_clients, alpha, rng, min_size=10, max_attempts=100, balance=True, tries=None):
    """NIID-Bench ``noniid-labeldir``, written as in its reference code (lists of indices per client).

    Per attempt, for each class k (ascending): shuffle class k's indices, draw p ~ Dir(alpha * 1_N),
    apply the balance rule, cut at ``(cumsum(p) * n_k).astype(int)[:-1]``. Accept when every client
    holds >= min_size samples, else redraw everything.

    Draw order mirrors the library where the definition leaves it open, and both choices are
    legitimate: classes without samples are skipped entirely (NIID-Bench loops over range(K) and so
    also draws a Dirichlet for an absent class, which changes only which stream values are used,
    never the distribution of the partition).
    """
    labels = np.asarray(labels)
    n = len(labels)
    cap = n / num_clients
    present = sorted(set(labels.tolist()))
    for attempt in range(max_attempts):
        held = [[] for _ in range(num_clients)]
        for k in present:
            idx_k = np.flatnonzero(labels == k)
            rng.shuffle(idx_k)
            p = rng.dirichlet([alpha] * num_clients)
            if not (np.isfinite(p).all() and p.sum() > 0):  # documented underflow guard
                p = np.zeros(num_clients)
                p[rng.integers(num_clients)] = 1.0
            if balance:
                q = np.array([p[j] if len(held[j]) < cap else 0.0 for j in range(num_clients)])
                if q.sum() > 0:
                    p = q / q.sum()
            cuts = (np.cumsum(p) * len(idx_k)).astype(int)[:-1]
            for j, chunk in enumerate(np.split(idx_k, cuts)):
                held[j].extend(chunk.tolist())
        if min(len(h) for h in held) >= min_size:
            if tries is not None:
                tries.append(attempt + 1)
            return [sorted(h) for h in held]
    raise AssertionError("reference found no partition")


def ref_dirichlet_client(labels, num_clients, alpha, rng, client_size=None):
    """Hsu, Qi & Brown 2019: client i draws q_i ~ Dir(alpha * p), p the global class distribution, and
    takes ``client_size`` samples without replacement: class by q_i restricted to classes with samples
    left, then a uniformly random sample of that class.

    Draw order mirrors the library's (legitimate) choices:
    - "a uniformly random sample of class k, without replacement" is taken as "the next sample of a
      uniformly shuffled copy of class k's pool"; all pools are shuffled up front, classes ascending.
    - the client's class counts are drawn in batches, not one sample at a time: a multinomial of the
      whole shortfall over the restricted q_i, capped at what each class has left, repeated. This has
      the same distribution as one-at-a-time draws: an i.i.d. stream of class draws from q_i in which
      draws of an exhausted class are rejected is exactly "draw from q_i restricted to classes left",
      and the first `need` draws of that stream accept sum_k min(c_k, left_k) of them, c ~ Mult(need, q_i).
    - a non-finite q_i becomes one-hot on a class drawn by p; if q_i has no mass on any class left,
      the rest is drawn in proportion to what the pool still holds (both documented).
    """
    labels = np.asarray(labels)
    n = len(labels)
    present = sorted(set(labels.tolist()))
    m = n // num_clients if client_size is None else client_size
    pools = []
    for k in present:
        idx = np.flatnonzero(labels == k)
        rng.shuffle(idx)
        pools.append(idx.tolist())
    p = np.array([len(pool) for pool in pools]) / n
    parts = []
    for _ in range(num_clients):
        q = rng.dirichlet(alpha * p)
        if not (np.isfinite(q).all() and q.sum() > 0):
            q = np.zeros(len(present))
            q[rng.choice(len(present), p=p)] = 1.0
        take = np.zeros(len(present), dtype=np.int64)
        need = m
        while need > 0:
            left = np.array([len(pool) for pool in pools]) - take
            w = np.where(left > 0, q, 0.0)
            if not w.sum() > TINY:
                w = left.astype(float)
            got = np.minimum(rng.multinomial(need, w / w.sum()), left)
            take += got
            need -= int(got.sum())
        mine = []
        for c, t in enumerate(take):
            mine += pools[c][:t]
            pools[c] = pools[c][t:]
        parts.append(sorted(mine))
    return parts


# ---------------------------------------------------------------------------------------------
# Label vectors
# ---------------------------------------------------------------------------------------------

BALANCED = np.repeat(np.arange(10), 70)  # 700 samples, 10 equal classes
# 600 samples, 6 unequal classes, class 2 absent, in random order
SKEWED = np.random.default_rng(11).permutation(np.repeat([0, 1, 3, 4, 5, 6], [300, 120, 90, 50, 30, 10]))
LABELS = {"balanced": BALANCED, "skewed": SKEWED}


class NanDirichlet(np.random.Generator):
    """A generator whose Dirichlet underflows to NaN (as some numpy versions do at tiny alpha)."""

    def dirichlet(self, alpha, size=None):
        return np.full(len(alpha), np.nan)


# ---------------------------------------------------------------------------------------------
# IID
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "num_clients"), [(700, 7), (103, 10), (5, 8), (1, 1), (0, 3)])
@pytest.mark.parametrize("seed", [0, 7])
def test_iid_equals_definition(n, num_clients, seed):
    labels = np.arange(n) % 3
    got = iid(labels, num_clients, stream(seed))
    want = ref_iid(labels, num_clients, stream(seed))
    assert_same_parts(got, want)
    sizes = [len(p) for p in got]
    assert sorted(sizes) == sorted([n // num_clients + (i < n % num_clients) for i in range(num_clients)])
    assert sorted(i for p in got for i in p.tolist()) == list(range(n))  # disjoint cover


def test_iid_by_hand():
    # permutation of 7 indices under this seed, cut 3 + 2 + 2
    labels = np.zeros(7, dtype=int)
    pi = stream(4).permutation(7).tolist()
    got = iid(labels, 3, stream(4))
    assert [p.tolist() for p in got] == [sorted(pi[:3]), sorted(pi[3:5]), sorted(pi[5:])]


# ---------------------------------------------------------------------------------------------
# dirichlet_class: exact equality with the reference
# ---------------------------------------------------------------------------------------------

CLASS_CASES = [
    # (labels, num_clients, alpha, kwargs)
    ("balanced", 7, 0.5, {}),
    ("balanced", 20, 0.5, {"min_size": 10}),  # the README setting, scaled down
    ("balanced", 10, 0.1, {"min_size": 30}),  # needs 4-7 attempts at these seeds
    ("balanced", 10, 0.1, {"min_size": 20, "balance": False}),  # needs 3-6 attempts
    ("balanced", 5, 5.0, {"balance": False, "min_size": 0}),
    ("skewed", 6, 0.3, {"min_size": 5}),
    ("skewed", 13, 1.0, {"min_size": 0}),
    ("skewed", 4, 0.05, {"min_size": 0, "balance": True}),  # balance rule bites hard
]


@pytest.mark.parametrize("case", CLASS_CASES, ids=[f"{c[0]}-N{c[1]}-a{c[2]}-{c[3]}" for c in CLASS_CASES])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dirichlet_class_equals_definition(case, seed):
    name, num_clients, alpha, kw = case
    labels = LABELS[name]
    got = dirichlet_per_class(labels, num_clients, alpha, stream(seed), **kw)
    want = ref_dirichlet_class(labels, num_clients, alpha, stream(seed), **kw)
    assert_same_parts(got, want)


def test_dirichlet_class_redraws_are_exercised():
    """The min_size re-draw loop is part of the definition matched above: make sure it ran."""
    for kw in ({"min_size": 30}, {"min_size": 20, "balance": False}):
        tries = []
        for seed in range(3):
            ref_dirichlet_class(BALANCED, 10, 0.1, stream(seed), tries=tries, **kw)
        assert min(tries) > 1, tries


def test_dirichlet_class_max_attempts_is_exact():
    # at this seed the reference's first acceptable attempt is number `need` (> 1)
    tries = []
    want = ref_dirichlet_class(BALANCED, 10, 0.1, stream(2), min_size=40, tries=tries)
    need = tries[0]
    assert need > 5
    got = dirichlet_per_class(BALANCED, 10, 0.1, stream(2), min_size=40, max_attempts=need)
    assert_same_parts(got, want)
    with pytest.raises(PartitionError, match="min_size=40"):
        dirichlet_per_class(BALANCED, 10, 0.1, stream(2), min_size=40, max_attempts=need - 1)


def test_dirichlet_class_underflow_fallback_equals_definition():
    # every Dirichlet draw is NaN: each class goes whole to one uniformly chosen client, and the balance
    # rule keeps the one-hot p when it would zero it
    kw = {"min_size": 0}
    got = dirichlet_per_class(SKEWED, 4, 0.5, NanDirichlet(np.random.PCG64(3)), **kw)
    want = ref_dirichlet_class(SKEWED, 4, 0.5, NanDirichlet(np.random.PCG64(3)), **kw)
    assert_same_parts(got, want)
    for part in got:  # whole classes only
        for k in np.unique(SKEWED[part]):
            assert (SKEWED[part] == k).sum() == (SKEWED == k).sum()


def test_dirichlet_class_by_hand():
    """A single client: p = (1,), so client 0 gets every sample whatever the draws."""
    got = dirichlet_per_class(SKEWED, 1, 0.5, stream(0), min_size=0)
    assert got[0].tolist() == list(range(SKEWED.size))


# ---------------------------------------------------------------------------------------------
# dirichlet_client: exact equality with the reference
# ---------------------------------------------------------------------------------------------

CLIENT_CASES = [
    ("balanced", 7, 0.5, {}),  # default client_size: uses all but 0 samples, the pool runs dry
    ("balanced", 20, 0.5, {"client_size": 20}),
    ("balanced", 10, 0.05, {}),  # very skewed q, classes run out, shortfall redrawn
    ("skewed", 6, 0.3, {"client_size": 80}),
    ("skewed", 13, 2.0, {}),
    ("skewed", 4, 0.01, {"client_size": 140}),
]


@pytest.mark.parametrize("case", CLIENT_CASES, ids=[f"{c[0]}-N{c[1]}-a{c[2]}-{c[3]}" for c in CLIENT_CASES])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dirichlet_client_equals_definition(case, seed):
    name, num_clients, alpha, kw = case
    labels = LABELS[name]
    got = dirichlet_per_client(labels, num_clients, alpha, stream(seed), **kw)
    want = ref_dirichlet_client(labels, num_clients, alpha, stream(seed), **kw)
    assert_same_parts(got, want)
    m = kw.get("client_size", labels.size // num_clients)
    assert all(len(p) == m for p in got)


def test_dirichlet_client_underflow_fallback_equals_definition():
    # q_i one-hot on a class drawn by p; once that class is used up the rest comes from what is left
    got = dirichlet_per_client(SKEWED, 5, 0.5, NanDirichlet(np.random.PCG64(8)), client_size=100)
    want = ref_dirichlet_client(SKEWED, 5, 0.5, NanDirichlet(np.random.PCG64(8)), client_size=100)
    assert_same_parts(got, want)


def test_dirichlet_client_by_hand():
    """One class only: p = (1,), q = (1,), and a client of size m holds m samples of it, the rest unused."""
    labels = np.zeros(30, dtype=int)
    got = dirichlet_per_client(labels, 3, 0.5, stream(0), client_size=7)
    assert [len(p) for p in got] == [7, 7, 7]
    assert len(set(np.concatenate(got).tolist())) == 21


# ---------------------------------------------------------------------------------------------
# Monte-Carlo: mean largest-class fraction against its expected value
# ---------------------------------------------------------------------------------------------


def expected_max_fraction_per_class(class_sizes, num_clients, alpha, balance, min_size, draws, rng):
    """E[mean over non-empty clients of max_k f_ik] for dirichlet_class, by vectorised simulation of the
    definition over ``draws`` independent attempts; the min_size re-draw is rejection sampling, so the
    accepted attempts have the distribution of the accepted partition."""
    n = int(np.sum(class_sizes))
    cap = n / num_clients
    sizes = np.zeros((draws, num_clients), dtype=np.int64)
    hist = np.zeros((draws, len(class_sizes), num_clients), dtype=np.int64)
    for k, n_k in enumerate(class_sizes):
        p = rng.dirichlet(np.full(num_clients, alpha), size=draws)
        if balance:
            q = np.where(sizes < cap, p, 0.0)
            tot = q.sum(axis=1, keepdims=True)
            p = np.where(tot > 0, q / np.where(tot > 0, tot, 1.0), p)
        cuts = np.floor(np.cumsum(p, axis=1) * n_k).astype(np.int64)[:, :-1]
        counts = np.diff(cuts, axis=1, prepend=0, append=n_k)
        hist[:, k, :] = counts
        sizes += counts
    ok = sizes.min(axis=1) >= min_size
    hist, sizes = hist[ok], sizes[ok]
    frac_max = hist.max(axis=1) / np.maximum(sizes, 1)
    nonempty = sizes > 0
    per_partition = (frac_max * nonempty).sum(axis=1) / nonempty.sum(axis=1)
    return per_partition.mean(), per_partition.std() / np.sqrt(per_partition.size)


@pytest.mark.parametrize("balance", [True, False])
def test_dirichlet_class_mean_max_fraction(balance):
    # README setting: 10 balanced classes (500 each), 20 clients, alpha = 0.5, min_size = 10 (default).
    # Expected value: 20000 simulated attempts (accepted ones), SE ~ 0.0002.
    # Library: mean of partition_stats' mean_max_class_fraction over S = 200 seeds. Measured spread of
    # that statistic across seeds: sd ~ 0.029 (balance) / 0.024 (no balance), so SE ~ 0.0021 / 0.0017.
    # Tolerance 0.009 ~ 4.2 combined SEs (false-alarm probability ~3e-5). Expected values: ~0.411
    # (balance) and ~0.367 (no balance); with the concentration doubled they drop to ~0.315 / ~0.284,
    # ~10 tolerances away.
    class_sizes = [500] * 10
    labels = np.repeat(np.arange(10), class_sizes)
    want, want_se = expected_max_fraction_per_class(
        class_sizes, 20, 0.5, balance, 10, 20000, np.random.default_rng(20240501)
    )
    assert want_se < 0.0005
    stats = [
        partition_stats(dirichlet_per_class(labels, 20, 0.5, stream(s), balance=balance), labels, 10)[
            "mean_max_class_fraction"
        ]
        for s in range(200)
    ]
    got = float(np.mean(stats))
    assert abs(got - want) < 0.009, (got, want)


def test_dirichlet_client_mean_max_fraction():
    # 10 unequal classes (200, 400, ..., 2000 samples: p is far from uniform), 10 clients of 20 samples.
    # 10 x 20 = 200 <= the smallest class, so no class ever runs out and each client's class counts are
    # exactly Multinomial(20, q_i), q_i ~ Dir(alpha * p), independently across clients. The expected
    # value of max_k counts_k / 20 is simulated from 400000 such pure draws (per-client sd ~0.19, SE
    # ~0.0003). Library: 300 seeds x 10 clients = 3000 independent clients, SE ~ 0.19 / sqrt(3000) =
    # 0.0034. Tolerance 0.015 ~ 4.4 combined SEs. Expected ~0.798 at alpha 0.5; a doubled
    # concentration gives ~0.689, ~7 tolerances away.
    sizes = 200 * np.arange(1, 11)
    labels = np.repeat(np.arange(10), sizes)
    p = sizes / sizes.sum()
    g = np.random.default_rng(20240502)
    q = g.dirichlet(0.5 * p, size=400000)
    want = (g.multinomial(20, q).max(axis=1) / 20).mean()
    stats = [
        partition_stats(dirichlet_per_client(labels, 10, 0.5, stream(s), client_size=20), labels, 10)[
            "mean_max_class_fraction"
        ]
        for s in range(300)
    ]
    got = float(np.mean(stats))
    assert abs(got - want) < 0.015, (got, want)


# ---------------------------------------------------------------------------------------------
# Property: both conventions equal their reference on random inputs
# ---------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 150),
    k=st.integers(1, 6),
    num_clients=st.integers(1, 9),
    alpha=st.sampled_from([0.05, 0.3, 1.0, 10.0]),
    seed=st.integers(0, 2**31),
    balance=st.booleans(),
)
def test_dirichlet_equals_definition_property(n, k, num_clients, alpha, seed, balance):
    labels = np.random.default_rng(seed).integers(0, k, n)
    got = dirichlet_per_class(labels, num_clients, alpha, stream(seed), min_size=0, balance=balance)
    assert_same_parts(got, ref_dirichlet_class(labels, num_clients, alpha, stream(seed), min_size=0, balance=balance))
    if n >= num_clients:
        got = dirichlet_per_client(labels, num_clients, alpha, stream(seed))
        assert_same_parts(got, ref_dirichlet_client(labels, num_clients, alpha, stream(seed)))
