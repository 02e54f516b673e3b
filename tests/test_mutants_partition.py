"""Tests written to kill surviving mutants of `fedbench.partition` (see docs/testing.md).

Modules: ``partition/base.py``, ``dirichlet.py``, ``quantity.py``, ``natural.py``. Every expected
value below is worked out by hand in the comments or replayed from the documented procedure with
plain numpy calls on a generator seeded like the library's (``numpy_rng(seed, "partition")``):
never a second call of the library.
"""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pytest
from test_partitions_more import stream  # numpy_rng(seed, "partition"), the partitioners' stream

from fedbench.partition import (
    PartitionError,
    dirichlet_per_class,
    dirichlet_per_client,
    natural,
    partition_stats,
    quantity,
)


def exactly(message: str) -> str:
    """A regex matching ``message`` and nothing else."""
    return "^" + re.escape(message) + "$"


def cut(q, total):
    """NIID-Bench's cut, written out: the parts between the cut points floor(cumsum(q) * total)."""
    points = [min(int(c * total), total) for c in np.cumsum(q)[:-1]]
    edges = [0, *points, total]
    return [b - a for a, b in zip(edges[:-1], edges[1:])]


class ZeroDirichlet(np.random.Generator):
    """A generator whose Dirichlet draws are all zeros (the documented "all-zero draw" case)."""

    def dirichlet(self, alpha, size=None):
        return np.zeros(len(alpha) if size is None else (size, len(alpha)))


# ---------------------------------------------------------------------------------------------
# base.py: the argument checks, with their exact messages
# ---------------------------------------------------------------------------------------------


def test_label_checks_name_the_problem_exactly():
    with pytest.raises(
        PartitionError, match=exactly("labels must be a 1-D array of class ids, got shape (2, 3); flatten it first")
    ):
        quantity(np.zeros((2, 3), dtype=int), 2, stream(0))
    with pytest.raises(
        PartitionError, match=exactly("labels must have an integer dtype, got float64; cast them with .astype(int)")
    ):
        quantity(np.array([0.0, 1.0]), 1, stream(0), min_size=0)
    with pytest.raises(
        PartitionError, match=exactly("labels must be non-negative class ids, found -2; remap classes to 0..K-1")
    ):
        quantity(np.array([0, -2, 1]), 1, stream(0), min_size=0)
    # booleans are accepted as class ids 0/1; an empty list (float64 to numpy) is an empty label vector
    (p,) = quantity(np.array([True, False, True]), 1, stream(0), min_size=0)
    assert p.tolist() == [0, 1, 2]
    assert [q.tolist() for q in quantity([], 2, stream(0), min_size=0)] == [[], []]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: dirichlet_per_class(np.zeros(10, int), 0, 0.5, stream(0)),
            "num_clients must be an integer >= 1, got 0",
        ),
        (
            lambda: dirichlet_per_class(np.zeros(10, int), 1, 0.5, stream(0), min_size=-1),
            "min_size must be an integer >= 0, got -1",
        ),
        (
            lambda: dirichlet_per_class(np.zeros(10, int), 1, 0.5, stream(0), max_attempts=0),
            "max_attempts must be an integer >= 1, got 0",
        ),
        (
            lambda: dirichlet_per_client(np.zeros(10, int), 0, 0.5, stream(0)),
            "num_clients must be an integer >= 1, got 0",
        ),
        (
            lambda: dirichlet_per_client(np.zeros(10, int), 2, 0.5, stream(0), client_size=0),
            "client_size must be an integer >= 1, got 0",
        ),
        (lambda: quantity(np.zeros(10, int), 0, stream(0)), "num_clients must be an integer >= 1, got 0"),
        (lambda: quantity(np.zeros(10, int), 1, stream(0), min_size=-1), "min_size must be an integer >= 0, got -1"),
        (
            lambda: quantity(np.zeros(10, int), 1, stream(0), max_attempts=0),
            "max_attempts must be an integer >= 1, got 0",
        ),
        (
            lambda: natural(np.zeros(3, int), 0, stream(0), np.zeros(3, int)),
            "num_clients must be an integer >= 1, got 0",
        ),
        (lambda: partition_stats([], np.zeros(3, int), 0), "num_classes must be an integer >= 1, got 0"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_integer_arguments_are_named_exactly(call, message):
    with pytest.raises(PartitionError, match=exactly(message)):
        call()


def test_smallest_allowed_integer_arguments_are_accepted():
    labels = np.zeros(6, dtype=int)
    # one client, one attempt, min_size 0: the single client holds everything (p = (1,))
    (p,) = dirichlet_per_class(labels, 1, 0.5, stream(0), min_size=0, max_attempts=1)
    assert p.tolist() == list(range(6))
    (p,) = quantity(labels, 1, stream(0), min_size=0, max_attempts=1)
    assert p.tolist() == list(range(6))
    # client_size 1: each of the 3 clients holds exactly one sample
    assert [len(p) for p in dirichlet_per_client(labels, 3, 0.5, stream(0), client_size=1)] == [1, 1, 1]
    (p,) = natural(labels, 1, stream(0), np.zeros(6, int))
    assert p.tolist() == list(range(6))
    assert partition_stats([np.arange(6)], labels, 1)["sizes"] == [6]


def test_alpha_check_message_is_exact():
    hint = "; small alpha (e.g. 0.1) means strongly non-IID clients, large alpha (e.g. 100) nearly IID"
    for bad, shown in ((0.0, "0.0"), (math.inf, "inf"), (True, "True")):
        with pytest.raises(PartitionError, match=exactly(f"alpha must be a finite number > 0, got {shown}{hint}")):
            dirichlet_per_class(np.zeros(10, int), 1, bad, stream(0))


def test_real_checks_of_the_size_laws_are_exact():
    labels = np.zeros(10, dtype=int)
    beta_hint = "; small beta (e.g. 0.1) gives very unequal sizes"
    cases = [
        ({"beta": 0}, f"beta must be a finite number > 0, got 0{beta_hint}"),
        ({"beta": math.inf}, f"beta must be a finite number > 0, got inf{beta_hint}"),
        ({"beta": True}, f"beta must be a finite number > 0, got True{beta_hint}"),
        ({"sigma": -1}, "sigma must be a finite number >= 0, got -1"),
        ({"sigma": math.nan}, "sigma must be a finite number >= 0, got nan"),
        ({"exponent": 0.0}, "exponent must be a finite number > 0, got 0.0"),
        ({"law": "zipf"}, "law must be one of dirichlet, lognormal, powerlaw, got 'zipf'"),
    ]
    for kw, message in cases:
        with pytest.raises(PartitionError, match=exactly(message)):
            quantity(labels, 2, stream(0), min_size=0, **kw)
    with pytest.raises(
        PartitionError, match=exactly("sizes must be one of equal, dirichlet, lognormal, powerlaw, got 'zipf'")
    ):
        dirichlet_per_client(labels, 2, 0.5, stream(0), sizes="zipf")
    # the boundaries themselves are allowed: sigma = 0 (equal weights)
    assert [p.size for p in quantity(labels, 2, stream(0), law="lognormal", sigma=0.0, min_size=0)] == [5, 5]


def test_min_size_that_exactly_fits_is_allowed_and_one_more_is_refused():
    labels = np.zeros(12, dtype=int)
    # 3 clients x min_size 4 = 12 = n: allowed; every client gets exactly 4 (equal weights at sigma = 0)
    assert [p.size for p in quantity(labels, 3, stream(0), law="lognormal", min_size=4)] == [4, 4, 4]
    with pytest.raises(
        PartitionError,
        match=exactly(
            "cannot give each of num_clients=3 clients min_size=5 samples from only 12 labels; "
            "use fewer clients or a smaller min_size"
        ),
    ):
        quantity(labels, 3, stream(0), law="lognormal", min_size=5)


# ---------------------------------------------------------------------------------------------
# base.py: partition_stats, every key by hand
# ---------------------------------------------------------------------------------------------


def test_partition_stats_every_key_by_hand():
    """labels 0 0 1 2 2 2 1 0 (counts 3, 2, 3 and an absent class 3: p = (3/8, 1/4, 3/8, 0)).
    Clients A = {0, 1, 2} (labels 0 0 1), B = {3, 4} (2 2), C = {} and D = {5, 6, 7} (2 1 0):
    sizes 3, 2, 0, 3; mean 2; population variance (1 + 0 + 4 + 1) / 4 = 1.5.
    Gini: ordered pairs sum 2 * (1 + 3 + 0 + 2 + 1 + 3) = 20, / (2 * 16 * 2) = 0.3125.
    f_A = (2/3, 1/3, 0, 0): TV 0.5 * (7/24 + 2/24 + 9/24) = 3/8, H = ln 3 - (2/3) ln 2, max 2/3;
    f_B = (0, 0, 1, 0): TV 0.5 * (3/8 + 1/4 + 5/8) = 5/8, H = 0, max 1;
    f_D = (1/3, 1/3, 1/3, 0): TV 0.5 * (1/24 + 2/24 + 1/24) = 1/12, H = ln 3, max 1/3.
    C is empty: left out of the per-client means. Zero fractions must not warn (0 log 0 = 0)."""
    labels = np.array([0, 0, 1, 2, 2, 2, 1, 0])
    parts = [np.array([0, 1, 2]), np.array([3, 4]), np.zeros(0, dtype=np.int64), np.array([5, 6, 7])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = partition_stats(parts, labels, 4)
    h_a = math.log(3) - 2 / 3 * math.log(2)
    want = {
        "num_clients": 4,
        "sizes": [3, 2, 0, 3],
        "label_hist": [[2, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0], [1, 1, 1, 0]],
        "size_mean": 2.0,
        "size_std": math.sqrt(1.5),
        "size_min": 0,
        "size_max": 3,
        "empty_clients": 1,
        "mean_label_entropy": (h_a + 0 + math.log(3)) / 3,
        "mean_max_class_fraction": (2 / 3 + 1 + 1 / 3) / 3,
        "tv_mean": (3 / 8 + 5 / 8 + 1 / 12) / 3,
        "tv_max": 5 / 8,
        "effective_classes_mean": (math.exp(h_a) + 1 + 3) / 3,
        "size_cv": math.sqrt(1.5) / 2,
        "size_gini": 0.3125,
    }
    assert set(s) == set(want)
    for key, value in want.items():
        assert s[key] == (value if isinstance(value, list) else pytest.approx(value, abs=1e-12)), key
    # plain Python ints where counts are reported (json shows 2, not 2.0)
    assert json.dumps(s["label_hist"]) == "[[2, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0], [1, 1, 1, 0]]"
    assert json.dumps([s["sizes"], s["size_min"], s["size_max"], s["empty_clients"], s["num_clients"]]) == (
        "[[3, 2, 0, 3], 0, 3, 1, 4]"
    )


def test_partition_stats_counts_a_one_sample_client():
    """labels 0 1 1 (p = (1/3, 2/3)); client {0} has f = (1, 0): TV 0.5 * (2/3 + 2/3) = 2/3, H = 0;
    client {0, 1, 2} has the global mix: TV 0, H = ln 3 - (2/3) ln 2."""
    s = partition_stats([np.array([0]), np.array([0, 1, 2])], np.array([0, 1, 1]), 2)
    h = math.log(3) - 2 / 3 * math.log(2)
    assert s["tv_mean"] == pytest.approx(1 / 3) and s["tv_max"] == pytest.approx(2 / 3)
    assert s["mean_label_entropy"] == pytest.approx(h / 2)
    assert s["mean_max_class_fraction"] == pytest.approx((1 + 2 / 3) / 2)


def test_partition_stats_with_no_clients_and_with_only_empty_clients():
    want_zero = {
        "size_mean": 0.0, "size_std": 0.0, "size_min": 0, "size_max": 0, "mean_label_entropy": 0.0,
        "mean_max_class_fraction": 0.0, "tv_mean": 0.0, "tv_max": 0.0, "effective_classes_mean": 0.0,
        "size_cv": 0.0, "size_gini": 0.0,
    }  # fmt: skip
    labels = np.array([0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = partition_stats([], labels, 2)
        assert {k: s[k] for k in want_zero} == want_zero
        assert (s["num_clients"], s["sizes"], s["label_hist"], s["empty_clients"]) == (0, [], [], 0)
        e = np.zeros(0, dtype=np.int64)
        s = partition_stats([e, e], labels, 2)
        assert {k: s[k] for k in want_zero} == want_zero
        assert (s["num_clients"], s["sizes"], s["label_hist"], s["empty_clients"]) == (2, [0, 0], [[0, 0], [0, 0]], 2)


def test_partition_stats_accepts_parts_as_lists():
    """Parts as Python lists, one of them empty ([] is float64 to numpy): labels 0 1 1, client {0, 1} has
    counts (1, 1), the empty one (0, 0)."""
    s = partition_stats([[0, 1], []], np.array([0, 1, 1]), 2)
    assert s["label_hist"] == [[1, 1], [0, 0]] and s["sizes"] == [2, 0]


def test_partition_stats_label_equal_to_num_classes_is_out_of_range():
    with pytest.raises(
        PartitionError,
        match=exactly("label 3 is out of range for num_classes=3; pass the dataset's class count"),
    ):
        partition_stats([np.arange(3)], np.array([0, 1, 3]), 3)


# ---------------------------------------------------------------------------------------------
# dirichlet.py
# ---------------------------------------------------------------------------------------------


def test_dirichlet_class_failure_message_with_the_defaults():
    """One class of 20 samples, 2 clients, alpha = 1e-6, defaults min_size = 10, max_attempts = 100.
    Replay of the documented attempt: shuffle the class, p ~ Dir(alpha * 1_2) (one-hot if not finite or
    all zero), balance (both clients hold 0 < cap = 10: p renormalised), cut at floor(p_0 * 20)."""
    alpha, n = 1e-6, 20
    r = stream(3)
    best = -1
    for _ in range(100):
        r.permutation(np.arange(n))
        p = r.dirichlet([alpha, alpha])
        if not (np.isfinite(p).all() and p.sum() > 0):
            p = np.zeros(2)
            p[r.integers(2)] = 1.0
        p = p / p.sum()
        sizes = cut(p, n)
        assert min(sizes) < 10  # no attempt is acceptable
        best = max(best, min(sizes))
    assert best == 0  # every attempt put the whole class on one client
    message = (
        "dirichlet_per_class found no partition with every client >= min_size=10 samples in 100 attempts "
        f"(alpha=1e-06, num_clients=2, 20 samples, 1 classes; best attempt's smallest client had {best}); "
        "use a larger alpha, fewer clients or a smaller min_size"
    )
    with pytest.raises(PartitionError, match=exactly(message)):
        dirichlet_per_class(np.zeros(n, dtype=int), 2, alpha, stream(3))
    # min_size = 10 is also the default in the up-front check: 3 clients x 10 > 20
    with pytest.raises(PartitionError, match=r"^cannot give each of num_clients=3 clients min_size=10 samples"):
        dirichlet_per_class(np.zeros(n, dtype=int), 3, alpha, stream(3))


def test_dirichlet_class_all_zero_draw_becomes_one_hot():
    """Documented: an all-zero Dirichlet draw is replaced by a one-hot vector on a uniformly chosen client.
    Replay: shuffle the class, (the draw), then integers(3) picks the client that gets all 5 samples."""
    for balance in (True, False):
        r = ZeroDirichlet(np.random.PCG64(2))
        r.permutation(np.arange(5))
        j = int(r.integers(3))
        assert j != 2  # so that "everything to the last client" (cut of an all-zero p) differs
        got = dirichlet_per_class(
            np.zeros(5, int), 3, 0.5, ZeroDirichlet(np.random.PCG64(2)), min_size=0, balance=balance
        )
        assert [p.tolist() for p in got] == [list(range(5)) if i == j else [] for i in range(3)]


def test_dirichlet_client_all_zero_prior_becomes_one_hot():
    """Documented: an all-zero q_i is replaced by a one-hot vector on a class drawn with probability p.
    Two classes of 20, one client of 20: that client holds exactly one whole class (replayed: both pools
    shuffled, then choice(2, p=(1/2, 1/2))). Drawing from the pool instead would mix the classes."""
    labels = np.repeat([0, 1], 20)
    r = ZeroDirichlet(np.random.PCG64(2))
    r.permutation(np.arange(20))
    r.permutation(np.arange(20, 40))
    c = int(r.choice(2, p=[0.5, 0.5]))
    (got,) = dirichlet_per_client(labels, 1, 0.5, ZeroDirichlet(np.random.PCG64(2)), client_size=20)
    assert got.tolist() == list(range(20 * c, 20 * c + 20))


def test_balance_rule_excludes_a_client_holding_exactly_the_cap():
    """NIID-Bench's rule: clients already holding >= cap samples get no share. Client 0 holds exactly cap = 3:
    its 0.5 goes, the others' 0.25 + 0.25 are renormalised to 0.5 + 0.5."""
    from fedbench.partition.dirichlet import _balanced

    q = _balanced(np.array([0.5, 0.25, 0.25]), np.array([3, 2, 0]), cap=3.0)
    assert q.tolist() == [0.0, 0.5, 0.5]


def test_dirichlet_class_accepts_a_smallest_client_of_exactly_min_size():
    """One class of 20, two clients, one attempt. Replay: shuffle, p ~ Dir(0.5, 0.5), renormalised by the
    balance rule (both hold 0 < cap), cut at c = floor(p_0 * 20): client 0 gets the first c shuffled indices.
    With min_size = min(c, 20 - c) the attempt is accepted (>= min_size)."""
    r = stream(11)
    perm = r.permutation(np.arange(20))
    p = r.dirichlet([0.5, 0.5])
    p = p / p.sum()
    c = min(int(p[0] * 20), 20)
    assert 0 < min(c, 20 - c)
    got = dirichlet_per_class(np.zeros(20, int), 2, 0.5, stream(11), min_size=min(c, 20 - c), max_attempts=1)
    assert [g.tolist() for g in got] == [sorted(perm[:c].tolist()), sorted(perm[c:].tolist())]


def test_fill_treats_mass_of_at_most_tiny_as_no_mass():
    """_fill's rule: when q's mass on the classes left is <= the smallest normal float (numerically none), the
    rest is drawn in proportion to what the pool holds. q = (tiny, 0) with one sample of each class left and
    one to draw: multinomial(1, (1/2, 1/2)), which under this seed is class 1 (replayed)."""
    from fedbench.partition.dirichlet import _fill

    tiny = np.finfo(float).tiny
    assert np.random.default_rng(2).multinomial(1, [0.5, 0.5]).tolist() == [0, 1]
    got = _fill(np.array([tiny, 0.0]), np.array([1, 1]), 1, np.random.default_rng(2))
    assert got.tolist() == [0, 1]


def test_dirichlet_client_emits_no_warnings():
    labels = np.repeat(np.arange(5), [40, 30, 20, 7, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parts = dirichlet_per_client(labels, 4, 0.05, stream(0), client_size=25)
    assert [p.size for p in parts] == [25] * 4


def test_dirichlet_client_argument_errors_are_exact():
    labels = np.zeros(20, dtype=int)
    with pytest.raises(
        PartitionError,
        match=exactly("only 5 labels for num_clients=6, so every client would be empty; use fewer clients"),
    ):
        dirichlet_per_client(np.zeros(5, int), 6, 0.5, stream(0))
    with pytest.raises(
        PartitionError,
        match=exactly(
            "client_size=7 x num_clients=3 needs 21 samples but there are only 20; "
            "use a smaller client_size or fewer clients"
        ),
    ):
        dirichlet_per_client(labels, 3, 0.5, stream(0), client_size=7)
    # the size laws' min_size (default 10) may not exceed the mean size
    with pytest.raises(
        PartitionError,
        match=exactly(
            "min_size=10 is more than the mean client size client_size=9; "
            "use a smaller min_size, a larger client_size or fewer clients"
        ),
    ):
        dirichlet_per_client(labels, 2, 0.5, stream(0), client_size=9, sizes="lognormal")


def test_dirichlet_client_as_many_labels_as_clients_gives_one_each():
    # n = N = 4: default client_size 4 // 4 = 1, every sample used once
    parts = dirichlet_per_client(np.array([0, 1, 1, 2]), 4, 0.5, stream(0))
    assert [p.size for p in parts] == [1, 1, 1, 1]
    assert sorted(np.concatenate(parts).tolist()) == [0, 1, 2, 3]
    assert all(p.dtype == np.int64 for p in parts)


def test_dirichlet_client_min_size_equal_to_client_size_gives_equal_sizes():
    # default min_size 10 = client_size: every client gets min_size and the T - N * min_size = 0 rest
    parts = dirichlet_per_client(np.zeros(30, int), 3, 0.5, stream(0), client_size=10, sizes="lognormal")
    assert [p.size for p in parts] == [10, 10, 10]


@pytest.mark.parametrize("law", ["lognormal", "powerlaw"])
def test_dirichlet_client_size_laws_use_their_default_parameters(law):
    """sizes=<law> with the defaults sigma = 1, exponent = 1.5, min_size = 10: the sizes are drawn first
    from the stream: s = 10 + cut(softmax(log w), T - N * 10), log w = z (N(0, 1)) or E / 1.5 (Exp(1)),
    T = client_size * N = 60 * 6."""
    labels = np.repeat(np.arange(4), 100)
    r = stream(5)
    logw = r.standard_normal(6) if law == "lognormal" else r.standard_exponential(6) / 1.5
    w = np.exp(logw - logw.max())
    want = [10 + s for s in cut(w / w.sum(), 360 - 60)]
    parts = dirichlet_per_client(labels, 6, 0.5, stream(5), client_size=60, sizes=law)
    assert [p.size for p in parts] == want
    assert len(set(want)) > 2 and sum(want) == 360


def test_dirichlet_client_dirichlet_sizes_default_beta():
    """sizes=dirichlet with the defaults beta = 0.5, min_size = 0 given: the first row of a batch of 1024
    draws Dir(0.5 * 1_5) is accepted; sizes = cut(row, T = 5 * 40)."""
    labels = np.repeat(np.arange(4), 100)
    q = stream(4).dirichlet([0.5] * 5, size=1024)[0]
    want = cut(q / q.sum(), 200)
    parts = dirichlet_per_client(labels, 5, 0.5, stream(4), client_size=40, sizes="dirichlet", min_size=0)
    assert [p.size for p in parts] == want


def _best_of_impossible_draws(rng, draws=100_000):
    """Two clients, T = 20, min_size = 10: a row is accepted only when q = (1/2, 1/2) exactly. Replays
    the batches of 1024 Dir(0.5, 0.5) rows, checks none is accepted, and returns the message's "best":
    over all rows, the largest smallest client by the acceptance rule, min(q_j * 20, cut size), floored."""
    best = -1
    left = draws
    while left:
        q = rng.dirichlet([0.5, 0.5], size=min(1024, left))
        q = q / q.sum(axis=1, keepdims=True)
        c = np.minimum((q[:, 0] * 20).astype(np.int64), 20)
        smallest = np.minimum(q.min(axis=1) * 20, np.minimum(c, 20 - c))
        assert not (smallest >= 10).any()
        best = max(best, int(np.floor(smallest.max())))
        left -= min(1024, left)
    return best


def test_size_law_failure_messages_with_the_defaults():
    """quantity and dirichlet_client(sizes=dirichlet) with every default (beta 0.5, min_size 10,
    max_attempts 100000) on 20 samples and 2 clients: no draw is acceptable (replayed); the message names
    the caller's option (law= / sizes=). The reported "best" is checked separately (see the xfail below)."""
    tail = (
        "use a larger beta, fewer clients, a smaller min_size, or {k}=lognormal or {k}=powerlaw "
        "(which guarantee min_size without redraws)"
    )
    r = stream(6)
    r.permutation(20)  # quantity shuffles first
    _best_of_impossible_draws(r)
    head = "quantity with law=dirichlet found no sizes with every client >= min_size=10 samples in 100000 draws "
    head += "(beta=0.5, num_clients=2, 20 samples; best draw's smallest client had "
    with pytest.raises(
        PartitionError, match="^" + re.escape(head) + r"\d+" + re.escape("); " + tail.format(k="law")) + "$"
    ):
        quantity(np.zeros(20, int), 2, stream(6))
    _best_of_impossible_draws(stream(6))  # dirichlet_client draws the sizes first
    head = "dirichlet_client with sizes=dirichlet found no sizes with every client >= min_size=10 samples in 100000 "
    head += "draws (beta=0.5, num_clients=2, 20 samples; best draw's smallest client had "
    with pytest.raises(
        PartitionError, match="^" + re.escape(head) + r"\d+" + re.escape("); " + tail.format(k="sizes")) + "$"
    ):
        dirichlet_per_client(np.zeros(20, int), 2, 0.5, stream(6), client_size=10, sizes="dirichlet")


def test_size_law_failure_message_reports_the_best_draw():
    """Same setting: the best draw is the row closest to (1/2, 1/2); its smallest client by the acceptance
    rule, q_1 * 20 just under 10, floors to 9 (it was the batch's worst row, 0, before the fix)."""
    r = stream(6)
    r.permutation(20)
    best = _best_of_impossible_draws(r)
    assert best == 9
    with pytest.raises(PartitionError, match=f"best draw's smallest client had {best}\\)"):
        quantity(np.zeros(20, int), 2, stream(6))


# ---------------------------------------------------------------------------------------------
# quantity.py
# ---------------------------------------------------------------------------------------------


def test_quantity_defaults_are_dirichlet_beta_half_min_size_ten():
    """quantity(labels, N, rng): law dirichlet, beta 0.5, min_size 10. Replay: permutation, then the
    first row of the batch with min(q) * n >= 10 and cut sizes >= 10."""
    n, N = 300, 6
    r = stream(2)
    pi = r.permutation(n).tolist()
    batch = r.dirichlet([0.5] * N, size=1024)
    row = next(q / q.sum() for q in batch if min(q / q.sum() * n) >= 10 and min(cut(q / q.sum(), n)) >= 10)
    sizes = cut(row, n)
    got = quantity(np.zeros(n, int), N, stream(2))
    assert [p.size for p in got] == sizes
    assert got[0].tolist() == sorted(pi[: sizes[0]])


@pytest.mark.parametrize("law", ["lognormal", "powerlaw"])
def test_quantity_laws_use_their_default_parameters(law):
    """sigma = 1 and exponent = 1.5 by default, min_size 10: sizes 10 + cut(softmax(log w), n - N * 10)."""
    n, N = 300, 6
    r = stream(3)
    r.permutation(n)
    logw = r.standard_normal(N) if law == "lognormal" else r.standard_exponential(N) / 1.5
    w = np.exp(logw - logw.max())
    want = [10 + s for s in cut(w / w.sum(), n - N * 10)]
    assert [p.size for p in quantity(np.zeros(n, int), N, stream(3), law=law)] == want
    assert len(set(want)) > 2


def test_quantity_weights_are_computed_in_log_space():
    """sigma = 1000: log weights ~ +-1000 (exp overflows outside log space). The client with the largest
    z gets min_size + everything else (every other weight is exp(-1000 * gap) = 0 unless two z are
    within ~0.7 / 1000, checked not to be the case)."""
    n, N = 100, 4
    r = stream(0)
    r.permutation(n)
    z = r.standard_normal(N)
    gaps = np.sort(z)[-1] - np.sort(z)[-2]
    assert gaps > 0.01
    want = [5 + (n - N * 5 if j == int(np.argmax(z)) else 0) for j in range(N)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = quantity(np.zeros(n, int), N, stream(0), law="lognormal", sigma=1000.0, min_size=5)
    assert [p.size for p in got] == want


def test_quantity_max_attempts_is_exact_across_batches():
    """n = 200, 8 clients, beta 0.5, min_size 11, seed 8: replaying batches of 1024, the first acceptable
    row is number 1362 (0-based, in the second batch). max_attempts = 1363 reaches it (the second batch
    has 339 rows, the same rows as the first 339 of a full one); max_attempts = 1362 does not."""
    n, N, ms = 200, 8, 11
    r = stream(8)
    r.permutation(n)
    rows = np.concatenate([r.dirichlet([0.5] * N, size=1024) for _ in range(2)])
    ok = [i for i, q in enumerate(rows) if min(q / q.sum() * n) >= ms and min(cut(q / q.sum(), n)) >= ms]
    assert ok[0] == 1362
    got = quantity(np.zeros(n, int), N, stream(8), beta=0.5, min_size=ms, max_attempts=1363)
    assert [p.size for p in got] == cut(rows[1362] / rows[1362].sum(), n)
    with pytest.raises(PartitionError, match=r" in 1362 draws \(beta=0\.5, num_clients=8, 200 samples; "):
        quantity(np.zeros(n, int), N, stream(8), beta=0.5, min_size=ms, max_attempts=1362)


def test_quantity_best_draw_can_be_zero():
    """3 samples, 3 clients, beta 1e-3, min_size 1, one draw: the row is (numerically) one-hot, so its cut
    leaves two clients empty and the message's best smallest client is 0."""
    r = stream(1)
    r.permutation(3)
    q = r.dirichlet([1e-3] * 3, size=1024)[0]
    assert min(cut(q / q.sum(), 3)) == 0
    message = (
        "quantity with law=dirichlet found no sizes with every client >= min_size=1 samples in 1 draws "
        "(beta=0.001, num_clients=3, 3 samples; best draw's smallest client had 0); use a larger beta, fewer "
        "clients, a smaller min_size, or law=lognormal or law=powerlaw (which guarantee min_size without redraws)"
    )
    with pytest.raises(PartitionError, match=exactly(message)):
        quantity(np.zeros(3, int), 3, stream(1), beta=1e-3, min_size=1, max_attempts=1)


def test_quantity_all_zero_dirichlet_row_becomes_one_hot():
    """An all-zero row (like a non-finite one) is replaced by a one-hot row on a uniformly drawn client:
    with min_size 0 that client takes all 30 samples. Replay: permutation(30), integers(4, size=1024)."""
    r = ZeroDirichlet(np.random.PCG64(5))
    r.permutation(30)
    j = int(r.integers(4, size=1024)[0])
    got = quantity(np.zeros(30, int), 4, ZeroDirichlet(np.random.PCG64(5)), min_size=0)
    assert [p.size for p in got] == [30 if i == j else 0 for i in range(4)]


class NanDirichlet(np.random.Generator):
    """A generator whose Dirichlet draws are all NaN (underflow, as some numpy versions give at tiny alpha)."""

    def dirichlet(self, alpha, size=None):
        return np.full(len(alpha) if size is None else (size, len(alpha)), np.nan)


class RowsDirichlet(np.random.Generator):
    """The real generator's Dirichlet batches with chosen rows replaced (``rows``: index -> row), or every
    row replaced by ``every``."""

    def __init__(self, bit_generator, rows=None, every=None):
        super().__init__(bit_generator)
        self.rows, self.every = rows or {}, every

    def dirichlet(self, alpha, size=None):
        q = super().dirichlet(alpha, size=size)
        if self.every is not None:
            q[:] = self.every
        for i, row in self.rows.items():
            q[i] = row
        return q


def test_quantity_a_bad_row_does_not_spoil_the_rest_of_its_batch():
    """Rows are checked one by one: a NaN row 1 leaves row 0 (a real draw) as it is; with min_size 0 row 0
    is accepted. An all-zero row 0 becomes one-hot on integers(3, size=1)[0] (drawn after the batch) and is
    accepted, whatever the other rows are."""
    r = np.random.Generator(np.random.PCG64(7))
    r.permutation(30)
    q = r.dirichlet([0.5] * 3, size=1024)[0]
    got = quantity(np.zeros(30, int), 3, RowsDirichlet(np.random.PCG64(7), {1: np.nan}), min_size=0)
    assert [p.size for p in got] == cut(q / q.sum(), 30)
    assert max(cut(q / q.sum(), 30)) < 30  # not one-hot
    r = np.random.Generator(np.random.PCG64(7))
    r.permutation(30)
    r.dirichlet([0.5] * 3, size=1024)
    j = int(r.integers(3, size=1)[0])
    got = quantity(np.zeros(30, int), 3, RowsDirichlet(np.random.PCG64(7), {0: 0.0}), min_size=0)
    assert [p.size for p in got] == [30 if i == j else 0 for i in range(3)]


def test_quantity_normalises_each_row_by_its_sum():
    """A row whose float sum is 1 - 2**-53 (rounding, as real draws have): q = row / sum(row) =
    (0.5000000000000001, ...), so the cut point is floor(10.000000000000002) = 10: sizes 10, 10."""
    row = np.array([0.5, 0.4999999999999999])
    assert row.sum() < 1 and cut(row / row.sum(), 20) == [10, 10]
    got = quantity(np.zeros(20, int), 2, RowsDirichlet(np.random.PCG64(0), every=row), min_size=0)
    assert [p.size for p in got] == [10, 10]


def test_dirichlet_client_sizes_fallback_draws_one_client_per_row():
    """sizes=dirichlet with every Dirichlet draw NaN: the sizes' row 0 is one-hot on integers(3, size=1024)[0]
    (one draw per bad row of the batch), so that client holds all T = 15; then the pool is shuffled and it
    takes the first 15 of the permutation (its prior is one-hot on the only class)."""
    r = NanDirichlet(np.random.PCG64(3))
    j = int(r.integers(3, size=1024)[0])
    perm = r.permutation(np.arange(30))
    got = dirichlet_per_client(
        np.zeros(30, int), 3, 0.5, NanDirichlet(np.random.PCG64(3)), client_size=5, sizes="dirichlet", min_size=0
    )
    assert [p.tolist() for p in got] == [sorted(perm[:15].tolist()) if i == j else [] for i in range(3)]


# ---------------------------------------------------------------------------------------------
# natural.py
# ---------------------------------------------------------------------------------------------


def test_natural_errors_are_exact():
    labels = np.zeros(4, dtype=int)
    with pytest.raises(PartitionError, match=exactly("groups has shape (3,), labels (4,); one group id per sample")):
        natural(labels, 1, stream(0), np.zeros(3, int))
    with pytest.raises(
        PartitionError,
        match=exactly("num_clients=1: the dataset has 0 natural clients; allowed: 1 <= num_clients <= 0"),
    ):
        natural(np.zeros(0, int), 1, stream(0), np.zeros(0, int))
    with pytest.raises(PartitionError, match=exactly("select='all': allowed: first, random")):
        natural(labels, 1, stream(0), np.zeros(4, int), select="all")


def test_natural_all_groups_by_hand():
    """groups 1 0 1 2 0 2: natural client 0 holds {1, 4}, 1 holds {0, 2}, 2 holds {3, 5}; N = G = 3 is allowed,
    and the parts are int64 arrays."""
    groups = np.array([1, 0, 1, 2, 0, 2])
    parts = natural(np.zeros(6, int), 3, stream(0), groups)
    assert [p.tolist() for p in parts] == [[1, 4], [0, 2], [3, 5]]
    assert all(p.dtype == np.int64 for p in parts)
    # select="random" with N = G: every natural client, each once (drawn without replacement), ascending
    groups = np.arange(20) % 10  # natural client g holds {g, g + 10}
    parts = natural(np.zeros(20, int), 10, stream(0), groups, select="random")
    assert [p.tolist() for p in parts] == [[g, g + 10] for g in range(10)]


def test_natural_config_error_lists_the_datasets_with_natural_clients():
    from fedbench.config import ConfigError, compose, validate

    with pytest.raises(
        ConfigError,
        match=exactly(
            "partition=natural: dataset=digits has no natural clients; "
            "allowed with: fedprox_synthetic, femnist, shakespeare"
        ),
    ):
        validate(compose("partition=natural"))


# ---------------------------------------------------------------------------------------------
# Follow-up run on base.py's checks, class_pools, as_parts, partition_stats and dirichlet_per_class
# ---------------------------------------------------------------------------------------------


def test_partition_stats_of_an_empty_label_set_warns_nothing():
    """No labels at all and two empty clients: the global distribution is not computed as 0 / 0 (which
    numpy would report as a RuntimeWarning); every per-client statistic is 0 (no non-empty client)."""
    e = np.zeros(0, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = partition_stats([e, e], e, 3)
    assert (s["sizes"], s["label_hist"], s["empty_clients"]) == ([0, 0], [[0, 0, 0], [0, 0, 0]], 2)
    assert (s["tv_mean"], s["tv_max"], s["size_min"], s["size_gini"]) == (0.0, 0.0, 0, 0.0)


def test_partition_stats_size_min_and_max_without_an_empty_client():
    """labels 0 1 1; clients {0} and {0, 1, 2}: sizes 1 and 3, so size_min 1 and size_max 3, mean 2,
    population std 1, cv 1 / 2, Gini |1 - 3| * 2 / (2 * 2^2 * 2) = 1/4."""
    s = partition_stats([np.array([0]), np.array([0, 1, 2])], np.array([0, 1, 1]), 2)
    assert (s["size_min"], s["size_max"], s["empty_clients"]) == (1, 3, 0)
    assert (s["size_mean"], s["size_std"], s["size_cv"], s["size_gini"]) == (2.0, 1.0, 0.5, 0.25)


def test_dirichlet_class_of_no_labels_gives_empty_clients():
    """No samples and min_size 0: no class to hand out, the first attempt is accepted (smallest client
    0 >= 0) and every client is an empty int64 array."""
    parts = dirichlet_per_class(np.zeros(0, dtype=np.int64), 2, 0.5, stream(0), min_size=0)
    assert [p.tolist() for p in parts] == [[], []]
    assert all(p.dtype == np.int64 for p in parts)
