"""The shards, classes_per_client and quantity partitions, and partition_stats' heterogeneity statistics.

Definitions: docs/partitions.md and the docstrings of ``fedbench.partition.{shards,classes,quantity}``.
Each partitioner is checked three ways:

- known answers that the definition forces whatever the random draws (written out by hand), or
  that follow from replaying the seeded stream by hand on a tiny input;
- exact equality with a loop-by-loop reference written here from the definition, fed the same
  seeded generator (``fedbench.rng.numpy_rng(seed, "partition")``, as the simulator seeds it), on
  fixed cases and on hypothesis-drawn inputs;
- properties and distributions: disjoint cover (or the documented unused samples), exactly ``k``
  labels, shard counts, ``min_size``, and sizes following the law (with stated margins).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbench.partition import (
    PARTITIONERS,
    PartitionError,
    classes_per_client,
    dirichlet_per_class,
    partition_stats,
    quantity,
    shards,
    split_options,
)
from fedbench.registry import defaults, options, range_errors
from fedbench.rng import numpy_rng


def stream(seed: int) -> np.random.Generator:
    return numpy_rng(seed, "partition")


def check_parts(parts, n, num_clients):
    """Valid output: N ascending int64 arrays, disjoint, in range; returns the used indices."""
    assert isinstance(parts, list) and len(parts) == num_clients
    for p in parts:
        assert isinstance(p, np.ndarray) and p.dtype == np.int64 and p.ndim == 1
        assert np.all(np.diff(p) > 0), "indices must be strictly ascending"
        assert p.size == 0 or (p[0] >= 0 and p[-1] < n)
    flat = np.concatenate(parts)
    assert np.unique(flat).size == flat.size, "clients must be disjoint"
    return flat


def covers(parts, n):
    """Every index 0..n-1 used exactly once."""
    return sorted(np.concatenate(parts).tolist()) == list(range(n))


def assert_same_parts(got, want):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.dtype == np.int64
        assert g.tolist() == list(w), f"client {i} differs"


def cut(q, total):
    """NIID-Bench's cut, written out: parts between floor(cumsum(q) * total) cut points."""
    points = [min(int(c * total), total) for c in np.cumsum(q)[:-1]]
    edges = [0, *points, total]
    return [b - a for a, b in zip(edges[:-1], edges[1:])]


BALANCED = np.repeat(np.arange(10), 60)  # 600 samples, 10 equal classes
# 500 samples, 6 unequal classes, class 2 absent, in random order
SKEWED = np.random.default_rng(5).permutation(np.repeat([0, 1, 3, 4, 5, 6], [200, 120, 80, 50, 40, 10]))


# ---------------------------------------------------------------------------------------------
# Registry and config options
# ---------------------------------------------------------------------------------------------


def test_registered_as_functions_and_options():
    for name, fn in (("shards", shards), ("classes_per_client", classes_per_client), ("quantity", quantity)):
        assert PARTITIONERS[name] is fn
        schema = options("partition")[name].schema
        assert schema().name == name
    skew = {"noise": 0.0, "rotation": 0.0}  # every option's feature-skew keys (tests/test_feature_skew.py)
    assert defaults(options("partition")["shards"].schema) == {"name": "shards", "shards_per_client": 2, **skew}
    assert defaults(options("partition")["classes_per_client"].schema) == {"name": "classes_per_client", "k": 2, **skew}
    assert defaults(options("partition")["quantity"].schema) == {
        **skew,
        "name": "quantity",
        "law": "dirichlet",
        "beta": 0.5,
        "sigma": 1.0,
        "exponent": 1.5,
        "min_size": 10,
        "max_attempts": 100_000,
    }


@pytest.mark.parametrize(
    ("name", "key", "bad", "good"),
    [
        ("shards", "shards_per_client", 0, 1),
        ("classes_per_client", "k", 0, 1),
        ("quantity", "law", "zipf", "powerlaw"),
        ("quantity", "beta", 0.0, 1e-3),
        ("quantity", "beta", float("inf"), 1e3),
        ("quantity", "sigma", -0.1, 0.0),
        ("quantity", "exponent", 0.0, 0.1),
        ("quantity", "min_size", -1, 0),
        ("quantity", "max_attempts", 0, 1),
        ("dirichlet_client", "sizes", "zipf", "lognormal"),
        ("dirichlet_client", "min_size", -1, 0),
        ("iid", "noise", -0.1, 0.0),
        ("feature", "noise", float("nan"), 2.0),
        ("shards", "rotation", 360.5, 360.0),
        ("dirichlet_class", "rotation", -1.0, 0.0),
    ],
)
def test_config_range_checks(name, key, bad, good):
    schema = options("partition")[name].schema
    errors = range_errors(schema(**{key: bad}), "partition.")
    assert len(errors) == 1 and errors[0].startswith(f"partition.{key}=") and "allowed" in errors[0]
    assert range_errors(schema(**{key: good}), "partition.") == []


@pytest.mark.parametrize("name", ["shards", "classes_per_client", "quantity", "dirichlet_client", "feature"])
def test_config_keys_are_the_function_keywords(name):
    """The simulator calls ``PARTITIONERS[name](labels, N, rng=..., **fields minus name)``, the
    feature-skew keys split off (the batch function applies them)."""
    opts, skew = split_options(defaults(options("partition")[name].schema))
    assert set(skew) == {"noise", "rotation"}
    opts.pop("name")
    parts = PARTITIONERS[name](BALANCED, 6, rng=stream(0), **opts)
    check_parts(parts, BALANCED.size, 6)


@pytest.mark.parametrize(
    "call",
    [
        lambda: PARTITIONERS["shards"](BALANCED, 5, stream(0)),
        lambda: PARTITIONERS["classes_per_client"](BALANCED, 5, stream(0)),
        lambda: PARTITIONERS["quantity"](BALANCED, 5, stream(0), law="lognormal"),
    ],
)
def test_no_global_rng_use_and_deterministic(call):
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    a, b = call(), call()
    assert np.array_equal(np.random.get_state()[1], before)
    assert_same_parts(a, [p.tolist() for p in b])


# ---------------------------------------------------------------------------------------------
# shards
# ---------------------------------------------------------------------------------------------


def ref_shards(labels, num_clients, shards_per_client, rng):
    """Written from the definition: drop the permutation's tail, stable-sort the rest by label, blocks of m,
    deal shards by a second permutation."""
    n = len(labels)
    num_shards = num_clients * shards_per_client
    m = n // num_shards
    pi = rng.permutation(n).tolist()
    kept = sorted(pi[: num_shards * m], key=lambda i: labels[i])  # Python's sort is stable
    blocks = [kept[j * m : (j + 1) * m] for j in range(num_shards)]
    sigma = rng.permutation(num_shards).tolist()
    parts = []
    for i in range(num_clients):
        mine = []
        for t in range(shards_per_client):
            mine += blocks[sigma[i * shards_per_client + t]]
        parts.append(sorted(mine))
    return parts


def test_shards_whole_classes_by_hand():
    """5 classes x 4 samples, 5 clients, 1 shard each: shard size 4 = class size, so shard j is exactly
    class j and every client holds one whole class, each class going to exactly one client."""
    labels = np.random.default_rng(1).permutation(np.repeat(np.arange(5), 4))
    for seed in range(3):
        parts = shards(labels, 5, stream(seed), shards_per_client=1)
        held = []
        for p in parts:
            (c,) = np.unique(labels[p])
            assert p.tolist() == np.flatnonzero(labels == c).tolist()
            held.append(int(c))
        assert sorted(held) == [0, 1, 2, 3, 4]


def test_shards_tiny_by_hand():
    """labels [2, 0, 1, 0, 2, 1], 3 clients x 1 shard: m = 2 and the sort puts the two 0s, the two 1s and the two
    2s in shards 0, 1, 2, so client i gets the indices of label sigma[i] with sigma the second permutation."""
    labels = np.array([2, 0, 1, 0, 2, 1])
    r = stream(3)
    r.permutation(6)
    sigma = r.permutation(3).tolist()
    by_label = {0: [1, 3], 1: [2, 5], 2: [0, 4]}
    got = shards(labels, 3, stream(3), shards_per_client=1)
    assert [p.tolist() for p in got] == [by_label[s] for s in sigma]


def test_shards_remainder_is_the_permutations_tail():
    """n = 23, 5 shards of 4: the last 3 entries of the first permutation are the unused samples."""
    labels = np.arange(23) % 4
    tail = stream(7).permutation(23)[20:].tolist()
    parts = shards(labels, 5, stream(7), shards_per_client=1)
    flat = check_parts(parts, 23, 5)
    assert [p.size for p in parts] == [4] * 5
    assert sorted(set(range(23)) - set(flat.tolist())) == sorted(tail)


SHARD_CASES = [("balanced", 10, 2), ("balanced", 7, 3), ("skewed", 6, 2), ("skewed", 13, 1), ("skewed", 4, 5)]


@pytest.mark.parametrize(("name", "num_clients", "s"), SHARD_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_shards_equal_definition(name, num_clients, s, seed):
    labels = {"balanced": BALANCED, "skewed": SKEWED}[name]
    got = shards(labels, num_clients, stream(seed), shards_per_client=s)
    assert_same_parts(got, ref_shards(labels, num_clients, s, stream(seed)))


def test_shards_mcmahan_setting_scaled():
    """McMahan et al.'s MNIST setting scaled down 10x: 10 balanced classes of 60 (600 samples), 100 clients x 2
    shards of 3. Every shard is single-label (60 is a multiple of 3), so every client holds 1 or 2 labels, and
    each label's 20 shards go to clients: label counts per client are multiples of 3."""
    parts = shards(BALANCED, 100, stream(0))
    flat = check_parts(parts, BALANCED.size, 100)
    assert flat.size == 600 and all(p.size == 6 for p in parts)
    n_labels = [np.unique(BALANCED[p]).size for p in parts]
    assert set(n_labels) <= {1, 2} and n_labels.count(2) > 80  # two distinct shards share a label w.p. 19/199
    for p in parts:
        assert all(c % 3 == 0 for c in np.bincount(BALANCED[p]))


def test_shards_too_many_shards_raises():
    with pytest.raises(PartitionError, match=r"num_clients=300 x shards_per_client=2 = 600 shards.*only 599"):
        shards(BALANCED[:599], 300, stream(0))
    with pytest.raises(PartitionError, match="shards_per_client"):
        shards(BALANCED, 3, stream(0), shards_per_client=0)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 200),
    k=st.integers(1, 6),
    num_clients=st.integers(1, 12),
    s=st.integers(1, 4),
    seed=st.integers(0, 2**31),
)
def test_shards_properties(n, k, num_clients, s, seed):
    labels = np.random.default_rng(seed).integers(0, k, n)
    if num_clients * s > n:
        with pytest.raises(PartitionError):
            shards(labels, num_clients, stream(seed), shards_per_client=s)
        return
    parts = shards(labels, num_clients, stream(seed), shards_per_client=s)
    flat = check_parts(parts, n, num_clients)
    m = n // (num_clients * s)
    assert all(p.size == s * m for p in parts)
    assert n - flat.size == n % (num_clients * s)  # the documented unused remainder, < number of shards
    # labels per client: a shard is a run of the label-sorted order, so it spans at most
    # min(m, k) labels; a client holds at most s of those spans
    for p in parts:
        assert np.unique(labels[p]).size <= min(s * min(m, k), k)
    assert_same_parts(parts, ref_shards(labels, num_clients, s, stream(seed)))


# ---------------------------------------------------------------------------------------------
# classes_per_client
# ---------------------------------------------------------------------------------------------


def ref_classes(labels, num_clients, k, rng):
    """NIID-Bench's noniid-#label, written loop by loop over labels present (ascending)."""
    labels = np.asarray(labels)
    present = sorted(set(labels.tolist()))
    num_classes = len(present)
    contain = []
    for i in range(num_clients):
        current = [i % num_classes]
        if k > 1:
            others = [c for c in range(num_classes) if c != i % num_classes]
            current += [int(c) for c in rng.choice(others, size=k - 1, replace=False)]
        contain.append(current)
    held = [[] for _ in range(num_clients)]
    for c in range(num_classes):
        holders = [j for j in range(num_clients) if c in contain[j]]
        if not holders:
            continue  # nobody holds this label: unused
        idx = rng.permutation(np.flatnonzero(labels == present[c])).tolist()
        q, r = divmod(len(idx), len(holders))
        start = 0
        for pos, j in enumerate(holders):
            size = q + (1 if pos < r else 0)  # the first n_c mod h_c holders get one more
            held[j] += idx[start : start + size]
            start += size
    return [sorted(h) for h in held]


def test_classes_all_labels_sizes_by_hand():
    """k = K = 3, 3 clients, class sizes 4, 6, 5: every client holds every label; array_split gives
    label 0 -> 2, 1, 1; label 1 -> 2, 2, 2; label 2 -> 2, 2, 1. So sizes 6, 5, 4 whatever the draws."""
    labels = np.random.default_rng(2).permutation(np.repeat([0, 1, 2], [4, 6, 5]))
    for seed in range(3):
        parts = classes_per_client(labels, 3, stream(seed), k=3)
        assert covers(parts, labels.size)
        assert [np.bincount(labels[p], minlength=3).tolist() for p in parts] == [[2, 2, 2], [1, 2, 2], [1, 2, 1]]


def test_classes_one_label_each_by_hand():
    """k = 1: client i holds label i mod K only. 5 clients, K = 3, class sizes 4, 6, 5: label 0 is split
    between clients 0 and 3 (2 + 2), label 1 between 1 and 4 (3 + 3), label 2 goes whole to client 2."""
    labels = np.repeat([0, 1, 2], [4, 6, 5])
    parts = classes_per_client(labels, 5, stream(0), k=1)
    assert covers(parts, 15)
    assert [np.bincount(labels[p], minlength=3).tolist() for p in parts] == [
        [2, 0, 0],
        [0, 3, 0],
        [0, 0, 5],
        [2, 0, 0],
        [0, 3, 0],
    ]
    assert parts[2].tolist() == list(range(10, 15))


def test_classes_unheld_label_is_unused():
    """2 clients, K = 3, k = 1: clients hold labels 0 and 1; nobody holds label 2, whose samples go unused."""
    labels = np.repeat([0, 1, 2], [4, 6, 5])
    parts = classes_per_client(labels, 2, stream(0), k=1)
    assert parts[0].tolist() == [0, 1, 2, 3] and parts[1].tolist() == list(range(4, 10))


def test_classes_first_label_is_i_mod_k_of_present_labels():
    """Labels {1, 4, 7} (K = 3): client i's first label is the (i mod 3)-th present label."""
    labels = np.repeat([1, 4, 7], 30)
    parts = classes_per_client(labels, 7, stream(0), k=2)
    for i, p in enumerate(parts):
        held = set(np.unique(labels[p]).tolist())
        assert len(held) == 2 and [1, 4, 7][i % 3] in held


def test_classes_k2_replayed_by_hand():
    """K = 3, 3 clients, k = 2, 3 samples per label. Replaying the draws: client i holds label i and the one
    rng.choice picks from the other two; each label's permuted indices are cut among its holders."""
    labels = np.repeat([0, 1, 2], 3)
    r = stream(11)
    extra = [int(r.choice([c for c in range(3) if c != i], size=1, replace=False)[0]) for i in range(3)]
    holders = {c: [i for i in range(3) if c in (i, extra[i])] for c in range(3)}
    want = [[] for _ in range(3)]
    for c in range(3):
        idx = r.permutation(np.arange(3 * c, 3 * c + 3)).tolist()
        h = holders[c]
        sizes = {1: [3], 2: [2, 1], 3: [1, 1, 1]}[len(h)]
        start = 0
        for j, size in zip(h, sizes):
            want[j] += idx[start : start + size]
            start += size
    got = classes_per_client(labels, 3, stream(11), k=2)
    assert_same_parts(got, [sorted(w) for w in want])


CLASS_CASES = [("balanced", 10, 2), ("balanced", 7, 3), ("balanced", 25, 1), ("skewed", 4, 2), ("skewed", 9, 5)]


@pytest.mark.parametrize(("name", "num_clients", "k"), CLASS_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_classes_equal_definition(name, num_clients, k, seed):
    labels = {"balanced": BALANCED, "skewed": SKEWED}[name]
    got = classes_per_client(labels, num_clients, stream(seed), k=k)
    assert_same_parts(got, ref_classes(labels, num_clients, k, stream(seed)))


def test_classes_k_larger_than_classes_raises():
    with pytest.raises(PartitionError, match=r"k=7 .* only 6 classes"):  # class 2 is absent from SKEWED
        classes_per_client(SKEWED, 4, stream(0), k=7)
    with pytest.raises(PartitionError, match="k must be"):
        classes_per_client(SKEWED, 4, stream(0), k=0)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 200),
    num_labels=st.integers(1, 6),
    num_clients=st.integers(1, 12),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**31),
)
def test_classes_properties(n, num_labels, num_clients, k, seed):
    labels = np.random.default_rng(seed).integers(0, num_labels, n)
    present = np.unique(labels)
    if k > present.size:
        with pytest.raises(PartitionError):
            classes_per_client(labels, num_clients, stream(seed), k=k)
        return
    parts = classes_per_client(labels, num_clients, stream(seed), k=k)
    flat = check_parts(parts, n, num_clients)
    assert_same_parts(parts, ref_classes(labels, num_clients, k, stream(seed)))
    # the label sets, replayed from the stream's first draws: i mod K first, then k - 1 others
    r = stream(seed)
    assigned = []
    for i in range(num_clients):
        cur = [i % present.size]
        if k > 1:
            cur += [int(c) for c in r.choice([c for c in range(present.size) if c != cur[0]], k - 1, replace=False)]
        assert len(set(cur)) == k
        assigned.append({int(present[c]) for c in cur})
    held = [set(np.unique(labels[p]).tolist()) for p in parts]
    assert all(h <= a for h, a in zip(held, assigned))
    counts = {c: int((labels == c).sum()) for c in present.tolist()}
    n_holders = {c: sum(c in a for a in assigned) for c in counts}
    # used samples: exactly all samples of the labels someone holds; unheld labels unused
    held_labels = sorted(c for c in counts if n_holders[c])
    assert sorted(flat.tolist()) == np.flatnonzero(np.isin(labels, held_labels)).tolist()
    if num_clients >= present.size:  # every label is some client's first: everything is used
        assert covers(parts, n)
    # #C = k exactly when every label has at least as many samples as holders
    if all(counts[c] >= n_holders[c] for c in counts):
        assert held == assigned and all(len(h) == k for h in held)
    for c in held_labels:  # equal split: label c's pieces differ by <= 1, the larger ones first
        got = [int((labels[p] == c).sum()) for p, a in zip(parts, assigned) if c in a]
        assert sum(got) == counts[c] and got == sorted(got, reverse=True) and got[0] - got[-1] <= 1


# ---------------------------------------------------------------------------------------------
# quantity
# ---------------------------------------------------------------------------------------------


def ref_quantity(labels, num_clients, rng, law="dirichlet", beta=0.5, sigma=1.0, exponent=1.5, min_size=10):
    """Written from the definition: permutation first, then sizes, then consecutive slices."""
    n = len(labels)
    pi = rng.permutation(n).tolist()
    if law == "dirichlet":
        sizes = None
        while sizes is None:  # batches of 1024 rows; the first acceptable row in draw order
            batch = rng.dirichlet([beta] * num_clients, size=1024)
            bad = [i for i, q in enumerate(batch) if not (np.isfinite(q).all() and q.sum() > 0)]
            if bad:
                pick = rng.integers(num_clients, size=len(bad))
                for i, j in zip(bad, pick):
                    batch[i] = np.eye(num_clients)[j]
            for q in batch:
                q = q / q.sum()
                if min(q * n) >= min_size and min(cut(q, n)) >= min_size:
                    sizes = cut(q, n)
                    break
    else:
        logw = (
            sigma * rng.standard_normal(num_clients)
            if law == "lognormal"
            else (rng.standard_exponential(num_clients) / exponent)
        )
        w = np.exp(logw - logw.max())
        sizes = [min_size + s for s in cut(w / w.sum(), n - num_clients * min_size)]
    parts, start = [], 0
    for size in sizes:
        parts.append(sorted(pi[start : start + size]))
        start += size
    return parts


def test_quantity_equal_weights_by_hand():
    """lognormal with sigma = 0: equal weights. n = 23, 4 clients, min_size = 2: the other 15 are cut at
    floor(3.75), floor(7.5), floor(11.25) = 3, 7, 11, so sizes are 2 + (3, 4, 4, 4) = 5, 6, 6, 6, taken as
    consecutive slices of the permutation."""
    labels = np.zeros(23, dtype=int)
    pi = stream(9).permutation(23).tolist()
    got = quantity(labels, 4, stream(9), law="lognormal", sigma=0.0, min_size=2)
    assert [p.tolist() for p in got] == [sorted(pi[:5]), sorted(pi[5:11]), sorted(pi[11:17]), sorted(pi[17:])]


def test_quantity_dirichlet_first_accepted_draw_by_hand():
    """min_size = 0: the first Dirichlet row is accepted. Replay: permutation, then a batch of 1024 rows."""
    labels = np.zeros(50, dtype=int)
    r = stream(4)
    pi = r.permutation(50).tolist()
    q = r.dirichlet([0.5] * 3, size=1024)[0]
    sizes = cut(q / q.sum(), 50)
    got = quantity(labels, 3, stream(4), beta=0.5, min_size=0)
    assert [p.size for p in got] == sizes
    assert got[0].tolist() == sorted(pi[: sizes[0]])


def test_quantity_dirichlet_redraw_rule():
    """NIID-Bench's rule: the accepted row is the first with min(q) * n >= min_size. Find, at this seed, the first
    batch row that passes (earlier rows fail it, so they were redrawn) and check the sizes are its cut."""
    n, num_clients, min_size = 200, 8, 10
    r = stream(0)
    r.permutation(n)
    batch = r.dirichlet([0.5] * num_clients, size=1024)
    first = next(i for i, q in enumerate(batch) if min(q / q.sum() * n) >= min_size)
    assert first > 100  # the redraw really happens at this seed (row 293)
    got = quantity(np.zeros(n, dtype=int), num_clients, stream(0), beta=0.5, min_size=min_size)
    assert [p.size for p in got] == cut(batch[first] / batch[first].sum(), n)
    assert min(p.size for p in got) >= min_size


def test_quantity_single_client_takes_all():
    for law in ("dirichlet", "lognormal", "powerlaw"):
        (p,) = quantity(SKEWED, 1, stream(0), law=law)
        assert p.tolist() == list(range(SKEWED.size))


QUANTITY_CASES = [
    {"law": "dirichlet", "beta": 0.5, "min_size": 10},
    {"law": "dirichlet", "beta": 0.2, "min_size": 5},  # needs redraws, possibly over several batches
    {"law": "dirichlet", "beta": 5.0, "min_size": 0},
    {"law": "lognormal", "sigma": 1.0, "min_size": 10},
    {"law": "lognormal", "sigma": 3.0, "min_size": 0},
    {"law": "powerlaw", "exponent": 1.5, "min_size": 10},
    {"law": "powerlaw", "exponent": 0.3, "min_size": 3},
]


@pytest.mark.parametrize("kw", QUANTITY_CASES, ids=[str(i) for i in range(len(QUANTITY_CASES))])
@pytest.mark.parametrize("seed", [0, 1])
def test_quantity_equal_definition(kw, seed):
    got = quantity(SKEWED, 12, stream(seed), **kw)
    assert_same_parts(got, ref_quantity(SKEWED, 12, stream(seed), **kw))
    assert covers(got, SKEWED.size) and min(p.size for p in got) >= kw["min_size"]


def test_quantity_errors():
    with pytest.raises(PartitionError, match="min_size=10"):
        quantity(SKEWED, 51, stream(0), law="lognormal")  # 51 x 10 > 500
    r = stream(0)
    state = r.bit_generator.state
    with pytest.raises(PartitionError):
        quantity(SKEWED, 51, r)
    assert r.bit_generator.state == state  # refused before drawing
    # impossible within max_attempts: tiny beta puts nearly all mass on one client
    with pytest.raises(PartitionError) as info:
        quantity(SKEWED, 20, stream(0), beta=1e-3, min_size=10, max_attempts=3000)
    msg = str(info.value)
    assert "3000 draws" in msg and "beta=0.001" in msg and "larger beta" in msg and "\n" not in msg
    for kw in ({"law": "zipf"}, {"beta": 0}, {"sigma": -1}, {"exponent": 0}, {"max_attempts": 0}):
        with pytest.raises(PartitionError):
            quantity(SKEWED, 4, stream(0), **kw)


class NanDirichlet(np.random.Generator):
    """A generator whose Dirichlet underflows to NaN (as some numpy versions do at tiny concentrations)."""

    def dirichlet(self, alpha, size=None):
        return np.full((size, len(alpha)), np.nan)


def test_quantity_dirichlet_underflow_fallback():
    """A NaN row becomes one-hot on a uniformly drawn client: with min_size = 0 one client takes everything."""
    got = quantity(SKEWED, 5, NanDirichlet(np.random.PCG64(3)), min_size=0)
    assert sorted(p.size for p in got) == [0, 0, 0, 0, SKEWED.size]
    assert_same_parts(got, ref_quantity(SKEWED, 5, NanDirichlet(np.random.PCG64(3)), min_size=0))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 300),
    num_clients=st.integers(1, 15),
    law=st.sampled_from(["dirichlet", "lognormal", "powerlaw"]),
    param=st.sampled_from([0.05, 0.5, 2.0, 20.0]),
    min_size=st.integers(0, 8),
    seed=st.integers(0, 2**31),
)
def test_quantity_properties(n, num_clients, law, param, min_size, seed):
    labels = np.random.default_rng(seed).integers(0, 4, n)
    kw = {"law": law, "beta": param, "sigma": param, "exponent": param, "min_size": min_size}
    if num_clients * min_size > n:
        with pytest.raises(PartitionError):
            quantity(labels, num_clients, stream(seed), **kw)
        return
    try:
        parts = quantity(labels, num_clients, stream(seed), max_attempts=2048, **kw)
    except PartitionError as e:
        assert law == "dirichlet" and min_size > 0 and "2048 draws" in str(e)
        return
    check_parts(parts, n, num_clients)
    assert covers(parts, n) if n else all(p.size == 0 for p in parts)
    assert min(p.size for p in parts) >= min_size
    # the reference retries without a bound; the library succeeded, so it stops at the same row
    assert_same_parts(parts, ref_quantity(labels, num_clients, stream(seed), **kw))


def test_quantity_dirichlet_size_spread_matches_the_law():
    """Sizes n * q, q ~ Dir(beta * 1_N) (min_size = 0, so no conditioning): E[size_cv^2] = (N - 1) / (N beta + 1)
    (population variance of the q_j is Var(q_j) = (N - 1) / (N^2 (N beta + 1)) in expectation). N = 100,
    n = 10^5 (the cut adds < 1 sample per client), mean over 20 seeds. Tolerance 20%: the seed-to-seed sd of
    cv^2 measured (60 seeds) ~20% relative at beta = 1 and ~15% at beta = 10, so the 20-seed mean's sd is ~4.4%
    / ~3.4% (tolerance ~4.5 sd); halving or doubling beta moves the target by ~50% or more."""
    labels = np.zeros(100_000, dtype=int)
    for beta in (1.0, 10.0):
        cv2 = [
            partition_stats(quantity(labels, 100, stream(s), beta=beta, min_size=0), labels, 1)["size_cv"] ** 2
            for s in range(20)
        ]
        want = 99 / (100 * beta + 1)
        assert abs(np.mean(cv2) / want - 1) < 0.2, (beta, np.mean(cv2), want)


def test_quantity_lognormal_and_powerlaw_follow_their_laws():
    """log sizes = log weights + const (n = 10^5, 200 clients, min_size = 0): their sd is sigma for lognormal
    (sd of N(0, sigma^2)) and 1 / exponent for powerlaw (sd of Exp(1) / exponent). Mean over 20 seeds of the
    sample sd over 200 clients; measured (40 seeds) relative sd per seed ~5.5% (normal) / ~10% (exponential),
    so ~1.2% / ~2.2% for the mean: tolerance 10% is >= 4.5 sd. The same stream gives the same Exp(1) draws
    at every exponent, so exponent 3 gives half exponent 1.5's spread (2%: only the integer cut differs)."""
    labels = np.zeros(100_000, dtype=int)

    def sd_log(**kw):
        return np.mean(
            [np.std(np.log([p.size for p in quantity(labels, 200, stream(s), min_size=0, **kw)])) for s in range(20)]
        )

    for sigma in (0.5, 1.0):
        assert abs(sd_log(law="lognormal", sigma=sigma) / sigma - 1) < 0.1
    spread = sd_log(law="powerlaw", exponent=1.5)
    assert abs(spread * 1.5 - 1) < 0.1
    assert sd_log(law="powerlaw", exponent=3.0) == pytest.approx(spread / 2, rel=0.02)


def test_quantity_beta_orders_inequality():
    """Large beta: near-equal sizes; small beta: very unequal. Averaged over 5 seeds, gini falls with beta."""
    labels = np.zeros(20_000, dtype=int)
    gini = []
    for beta in (0.1, 0.5, 2.0, 100.0):
        g = [
            partition_stats(quantity(labels, 20, stream(s), beta=beta, min_size=0), labels, 1)["size_gini"]
            for s in range(5)
        ]
        gini.append(float(np.mean(g)))
    assert all(a > b + 0.05 for a, b in zip(gini, gini[1:])), gini
    # measured (30 seeds): ~0.82, 0.60, 0.39, 0.055 (Dir(100 * 1_20): cv ~ 0.1), 5-seed sd <= 0.03
    assert gini[0] > 0.7 and gini[-1] < 0.08, gini


def test_quantity_is_label_iid():
    """Clients are uniform random samples: each big client's label mix is close to the global one."""
    labels = np.repeat(np.arange(10), 1000)
    s = partition_stats(quantity(labels, 10, stream(0), law="lognormal", sigma=0.5), labels, 10)
    assert s["tv_max"] < 0.1 and s["effective_classes_mean"] > 9.8


# ---------------------------------------------------------------------------------------------
# partition_stats: heterogeneity statistics
# ---------------------------------------------------------------------------------------------


def test_stats_single_class_client_and_uniform_client():
    """10 balanced classes: a single-class client has TV 0.5 * (0.9 + 9 * 0.1) = 0.9 and 1 effective class; a
    client holding one sample of each class has TV 0 and exp(log 10) = 10 effective classes."""
    labels = np.repeat(np.arange(10), 10)
    single = np.flatnonzero(labels == 3)
    uniform = np.arange(0, 100, 10)
    s = partition_stats([single, uniform], labels, 10)
    assert s["tv_max"] == pytest.approx(0.9) and s["tv_mean"] == pytest.approx(0.45)
    assert s["effective_classes_mean"] == pytest.approx((1 + 10) / 2)
    s = partition_stats([uniform], labels, 10)
    assert s["tv_mean"] == pytest.approx(0.0, abs=1e-12) and s["effective_classes_mean"] == pytest.approx(10)


def test_stats_sizes_gini_and_cv_by_hand():
    """Sizes [0, 0, 0, 4]: mean 1; sum over ordered pairs of |s_i - s_j| = 6 * 4 = 24, / (2 * 16 * 1) = 0.75 =
    (N - 1) / N; population std sqrt((3 * 1 + 9) / 4) = sqrt(3), so cv = sqrt(3). Empty clients are left out of
    the per-client label statistics: the one client holds classes 0, 1 half and half."""
    labels = np.array([0, 1, 0, 1])
    e = np.zeros(0, dtype=np.int64)
    s = partition_stats([e, e, e, np.arange(4)], labels, 2)
    assert s["size_gini"] == pytest.approx(0.75) and s["size_cv"] == pytest.approx(math.sqrt(3))
    assert s["tv_mean"] == pytest.approx(0.0) and s["effective_classes_mean"] == pytest.approx(2.0)
    s = partition_stats([np.arange(2), np.arange(2, 4)], labels, 2)
    assert s["size_gini"] == 0.0 and s["size_cv"] == 0.0
    s = partition_stats([np.array([0]), np.array([1, 2, 3])], labels, 2)  # sizes 1, 3: |1-3| * 2 / (2 * 4 * 2)
    assert s["size_gini"] == pytest.approx(0.25) and s["size_cv"] == pytest.approx(0.5)


def test_stats_global_is_all_labels_even_with_unused_samples():
    """Global distribution = all labels passed in (3:1), not the assigned samples' (1:1). One client holding
    {0, 1}: f = (1/2, 1/2), p = (3/4, 1/4), TV = 0.5 * (1/4 + 1/4) = 0.25."""
    labels = np.array([0, 0, 0, 1])
    s = partition_stats([np.array([0, 3])], labels, 2)
    assert s["tv_mean"] == pytest.approx(0.25) and s["tv_max"] == pytest.approx(0.25)


def test_stats_edge_cases_and_flat_json():
    s = partition_stats([np.zeros(0, dtype=np.int64)] * 3, np.zeros(0, dtype=int), 4)
    for key in ("tv_mean", "tv_max", "effective_classes_mean", "size_cv", "size_gini"):
        assert s[key] == 0.0
    s = partition_stats(shards(BALANCED, 10, stream(0)), BALANCED, 10)
    assert json.loads(json.dumps(s)) == s
    for key in ("tv_mean", "tv_max", "effective_classes_mean", "size_cv", "size_gini"):
        assert isinstance(s[key], float)  # top-level numbers: summary.json -> partition_stats.<key> columns
    assert {"sizes", "label_hist", "mean_label_entropy", "mean_max_class_fraction", "empty_clients"} <= set(s)


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(0, 30), min_size=1, max_size=12), seed=st.integers(0, 2**31))
def test_stats_match_direct_formulas(sizes, seed):
    g = np.random.default_rng(seed)
    labels = g.integers(0, 3, sum(sizes))
    perm = g.permutation(labels.size)
    parts = [np.sort(c) for c in np.split(perm, np.cumsum(sizes)[:-1])]
    s = partition_stats(parts, labels, 3)
    x = np.array(sizes, dtype=float)
    if x.sum():
        mad = np.mean([abs(a - b) for a in x for b in x])
        assert s["size_gini"] == pytest.approx(mad / (2 * x.mean()))
        assert s["size_cv"] == pytest.approx(x.std() / x.mean())
    p = np.bincount(labels, minlength=3) / labels.size if labels.size else np.zeros(3)
    tvs, effs = [], []
    for part in parts:
        if part.size:
            f = np.bincount(labels[part], minlength=3) / part.size
            tvs.append(0.5 * np.abs(f - p).sum())
            effs.append(math.exp(-sum(v * math.log(v) for v in f if v > 0)))
    assert s["tv_mean"] == pytest.approx(np.mean(tvs) if tvs else 0.0)
    assert s["tv_max"] == pytest.approx(max(tvs) if tvs else 0.0)
    assert s["effective_classes_mean"] == pytest.approx(np.mean(effs) if effs else 0.0)
    assert 0.0 <= s["size_gini"] <= 1.0 and 0.0 <= s["tv_max"] <= 1.0


# ---------------------------------------------------------------------------------------------
# Monotonicity: tv_mean against the heterogeneity knobs
# ---------------------------------------------------------------------------------------------


BIG = np.repeat(np.arange(10), 200)  # 2000 samples, 10 equal classes


def mean_tv(make, seeds=range(3)):
    return float(np.mean([partition_stats(make(stream(s)), BIG, 10)["tv_mean"] for s in seeds]))


def test_tv_rises_as_dirichlet_alpha_falls():
    """dirichlet_class, 20 clients, 10 balanced classes, min_size = 0, mean over 3 seeds. Measured means (2000
    samples): ~0.80, 0.65, 0.39, 0.18, 0.04 at alpha 0.05, 0.2, 1, 5, 100; seed-to-seed sd <= 0.02. Margin
    between neighbours: 0.08."""
    alphas = (0.05, 0.2, 1.0, 5.0, 100.0)
    tv = [mean_tv(lambda r, a=a: dirichlet_per_class(BIG, 20, a, r, min_size=0)) for a in alphas]
    assert all(a > b + 0.08 for a, b in zip(tv, tv[1:])), tv
    assert tv[0] > 0.7 and tv[-1] < 0.1, tv


def test_tv_falls_as_k_rises():
    """classes_per_client on 10 balanced classes, 20 clients: a client with k labels, each split equally among
    its holders, has TV near 1 - k/10 (exactly 0.9 at k = 1 and 0 at k = 10). Margin 0.05 between neighbours."""
    tv = [mean_tv(lambda r, k=k: classes_per_client(BIG, 20, r, k=k)) for k in range(1, 11)]
    assert all(a > b + 0.05 for a, b in zip(tv, tv[1:])), tv
    assert tv[0] == pytest.approx(0.9) and tv[-1] == pytest.approx(0.0, abs=1e-12)
    for k, v in enumerate(tv, start=1):
        assert abs(v - (1 - k / 10)) < 0.03, (k, v)


def test_tv_falls_as_shards_per_client_rise():
    """shards on 10 balanced classes of 200, 20 clients: 1 shard of 100 is single-label (TV 0.9); more, smaller
    shards mix labels. Measured (2000 samples) ~0.9, 0.81, 0.59, 0.35 at 1, 2, 5, 10 shards. Margin 0.05."""
    tv = [mean_tv(lambda r, s=s: shards(BIG, 20, r, shards_per_client=s)) for s in (1, 2, 5, 10)]
    assert all(a > b + 0.05 for a, b in zip(tv, tv[1:])), tv
    assert tv[0] == pytest.approx(0.9)


@pytest.mark.parametrize("name", ["iid", "shards", "classes_per_client"])
def test_partitioners_name_a_bad_client_count_exactly(name):
    from fedbench.partition import PARTITIONERS, PartitionError

    labels = np.repeat(np.arange(4), 10)
    with pytest.raises(PartitionError, match="^num_clients must be an integer >= 1, got 0$"):
        PARTITIONERS[name](labels, 0, rng=np.random.default_rng(0))


def test_shards_names_a_bad_shard_count_exactly():
    from fedbench.partition import PARTITIONERS, PartitionError

    with pytest.raises(PartitionError, match="^shards_per_client must be an integer >= 1, got 0$"):
        PARTITIONERS["shards"](np.repeat(np.arange(4), 10), 2, rng=np.random.default_rng(0), shards_per_client=0)


def test_classes_per_client_defaults_to_two_labels_per_client():
    from fedbench.partition import PARTITIONERS

    labels = np.repeat(np.arange(10), 30)
    parts = PARTITIONERS["classes_per_client"](labels, 10, rng=np.random.default_rng(0))
    assert [len(np.unique(labels[p])) for p in parts] == [2] * 10
