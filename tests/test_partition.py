import json
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbench.partition import (
    PARTITIONERS,
    PartitionError,
    dirichlet_per_class,
    dirichlet_per_client,
    iid,
    partition_stats,
)
from fedbench.partition.dirichlet import _balanced

BALANCED = np.repeat(np.arange(10), 500)  # 10 classes x 500 samples


def rng(seed=0):
    return np.random.default_rng(seed)


def check_parts(parts, n, num_clients):
    assert isinstance(parts, list) and len(parts) == num_clients
    for p in parts:
        assert isinstance(p, np.ndarray) and p.dtype == np.int64 and p.ndim == 1
        assert np.all(np.diff(p) > 0), "indices must be strictly ascending"
        assert p.size == 0 or (p[0] >= 0 and p[-1] < n)
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    assert np.unique(flat).size == flat.size, "clients must be disjoint"
    return flat


def covers_all(parts, n):
    return np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))


CALLS = {
    "iid": lambda y, r: iid(y, 7, r),
    "dirichlet_class": lambda y, r: dirichlet_per_class(y, 7, 0.5, r),
    "dirichlet_client": lambda y, r: dirichlet_per_client(y, 7, 0.5, r),
}


def test_registry():
    from fedbench.partition import classes_per_client, natural, quantity, shards

    assert PARTITIONERS == {
        "iid": iid,
        "dirichlet_class": dirichlet_per_class,
        "dirichlet_client": dirichlet_per_client,
        "shards": shards,
        "classes_per_client": classes_per_client,
        "quantity": quantity,
        "natural": natural,
        "feature": iid,  # the iid split; its feature skew is applied per batch
    }
    assert issubclass(PartitionError, ValueError)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_deterministic_in_rng(name):
    y = BALANCED[:700]
    a, b, c = (CALLS[name](y, rng(s)) for s in (3, 3, 4))
    assert all(np.array_equal(x, z) for x, z in zip(a, b, strict=True))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c, strict=True))


@pytest.mark.parametrize("name", sorted(CALLS))
def test_no_global_rng_use(name):
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    CALLS[name](BALANCED[:700], rng(1))
    assert np.array_equal(np.random.get_state()[1], before)


def test_iid_sizes_and_coverage():
    parts = iid(BALANCED[:103], 10, rng())
    check_parts(parts, 103, 10)
    assert covers_all(parts, 103)
    assert sorted(p.size for p in parts) == [10] * 7 + [11] * 3


def test_dirichlet_class_covers_all():
    parts = dirichlet_per_class(BALANCED, 20, 0.3, rng())
    check_parts(parts, BALANCED.size, 20)
    assert covers_all(parts, BALANCED.size)
    assert min(p.size for p in parts) >= 10


def test_dirichlet_client_exact_sizes_and_unused():
    parts = dirichlet_per_client(BALANCED, 20, 0.3, rng(), client_size=200)
    flat = check_parts(parts, BALANCED.size, 20)
    assert all(p.size == 200 for p in parts)
    assert flat.size == 4000  # the other 1000 samples are unused
    default = dirichlet_per_client(BALANCED[:1003], 10, 0.3, rng())
    assert all(p.size == 100 for p in default)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    k=st.integers(1, 8),
    num_clients=st.integers(1, 15),
    alpha=st.floats(0.01, 100),
    seed=st.integers(0, 2**32 - 1),
    min_size=st.integers(0, 5),
)
def test_properties(n, k, num_clients, alpha, seed, min_size):
    y = np.random.default_rng(seed).integers(0, k, n)

    parts = iid(y, num_clients, rng(seed))
    check_parts(parts, n, num_clients)
    assert covers_all(parts, n)
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1

    if min_size * num_clients > n:
        with pytest.raises(PartitionError):
            dirichlet_per_class(y, num_clients, alpha, rng(seed), min_size=min_size)
    else:
        try:
            parts = dirichlet_per_class(y, num_clients, alpha, rng(seed), min_size=min_size, max_attempts=20)
        except PartitionError as e:
            assert min_size > 0 and "alpha" in str(e)
        else:
            check_parts(parts, n, num_clients)
            assert covers_all(parts, n)
            assert min(p.size for p in parts) >= min_size

    if n < num_clients:
        with pytest.raises(PartitionError):
            dirichlet_per_client(y, num_clients, alpha, rng(seed))
    else:
        parts = dirichlet_per_client(y, num_clients, alpha, rng(seed))
        check_parts(parts, n, num_clients)
        assert all(p.size == n // num_clients for p in parts)


def test_iid_is_near_uniform():
    s = partition_stats(iid(BALANCED, 20, rng()), BALANCED, 10)
    assert s["mean_label_entropy"] > 0.97 * math.log(10)


@pytest.mark.parametrize(
    "partition",
    [
        # min_size=0 so the most skewed setting never needs redraws; the skew is what is under test.
        lambda a, r: dirichlet_per_class(BALANCED, 20, a, r, min_size=0),
        lambda a, r: dirichlet_per_client(BALANCED, 20, a, r),
    ],
    ids=["per_class", "per_client"],
)
def test_alpha_controls_skew(partition):
    alphas = (0.05, 0.5, 5, 100)
    for seed in range(3):
        stats = [partition_stats(partition(a, rng(seed)), BALANCED, 10) for a in alphas]
        frac = [s["mean_max_class_fraction"] for s in stats]
        ent = [s["mean_label_entropy"] for s in stats]
        assert frac == sorted(frac, reverse=True) and len(set(frac)) == 4, frac
        assert ent == sorted(ent) and len(set(ent)) == 4, ent
        assert ent[-1] > 0.9 * math.log(10) and frac[-1] < 0.25  # alpha=100: close to IID
        assert frac[0] > 0.6 and ent[0] < 0.4 * math.log(10)  # alpha=0.05: concentrated


def test_dirichlet_class_never_hangs():
    y = np.random.default_rng(0).integers(0, 10, 3000)
    start = time.perf_counter()
    try:
        parts = dirichlet_per_class(y, 300, 1e-3, rng(), min_size=10)
    except PartitionError as e:
        msg = str(e)
        assert "alpha=0.001" in msg and "num_clients=300" in msg and "min_size=10" in msg
        assert "larger alpha" in msg and "\n" not in msg
    else:
        check_parts(parts, y.size, 300)
        assert covers_all(parts, y.size) and min(p.size for p in parts) >= 10
    assert time.perf_counter() - start < 5


def test_dirichlet_class_impossible_min_size_raises_before_drawing():
    r = rng()
    state = r.bit_generator.state
    start = time.perf_counter()
    with pytest.raises(PartitionError, match="min_size"):
        dirichlet_per_class(BALANCED[:2000], 500, 1e-3, r, min_size=10, max_attempts=10**9)
    assert time.perf_counter() - start < 1
    assert r.bit_generator.state == state  # no attempt was made


def test_balance_rule_by_hand():
    # client 0 already holds >= cap, so its share goes to the others, renormalised
    q = _balanced(np.array([0.5, 0.25, 0.25]), np.array([5, 1, 0]), cap=3.0)
    np.testing.assert_allclose(q, [0.0, 0.5, 0.5])
    # all mass on a full client: every proportion would be zeroed; fall back to p, no 0/0
    p = np.array([1.0, 0.0, 0.0])
    q = _balanced(p, np.array([5, 0, 0]), cap=3.0)
    assert np.all(np.isfinite(q)) and np.array_equal(q, p)


def test_balance_bounds_client_size():
    max_class = 500
    for seed in range(5):
        parts = dirichlet_per_class(BALANCED, 20, 0.05, rng(seed), min_size=0)
        assert max(p.size for p in parts) < BALANCED.size / 20 + max_class
    # without the rule, low alpha piles several whole classes onto one client
    biggest = [
        max(p.size for p in dirichlet_per_class(BALANCED, 20, 0.05, rng(s), min_size=0, balance=False))
        for s in range(5)
    ]
    assert max(biggest) >= BALANCED.size / 20 + max_class


def test_tiny_alpha_fallback_is_valid():
    y = BALANCED[::10]
    parts = dirichlet_per_class(y, 30, 1e-6, rng(), min_size=0)
    check_parts(parts, y.size, 30)
    assert covers_all(parts, y.size)
    parts = dirichlet_per_client(y, 30, 1e-6, rng())
    check_parts(parts, y.size, 30)


class NanDirichlet(np.random.Generator):
    """Simulates numpy versions whose dirichlet returns NaN at very small alpha."""

    def dirichlet(self, alpha, size=None):
        return np.full(len(alpha), np.nan)


def test_nan_dirichlet_guard():
    y = BALANCED[::10]
    parts = dirichlet_per_class(y, 5, 0.01, NanDirichlet(np.random.PCG64(0)), min_size=0)
    check_parts(parts, y.size, 5)
    assert covers_all(parts, y.size)
    parts = dirichlet_per_client(y, 5, 0.01, NanDirichlet(np.random.PCG64(0)), client_size=50)
    check_parts(parts, y.size, 5)
    assert all(p.size == 50 for p in parts)
    # q is one-hot, so the first client takes one whole class (every class has 50 samples); later
    # clients may land on an exhausted class and are then filled from what is left.
    assert np.unique(y[parts[0]]).size == 1


def test_partition_stats_by_hand():
    labels = np.array([0, 0, 1, 2, 2, 2])
    parts = [np.array([0, 1, 2]), np.array([3, 4, 5]), np.array([], dtype=np.int64)]
    s = partition_stats(parts, labels, 3)
    assert s["num_clients"] == 3
    assert s["sizes"] == [3, 3, 0]
    assert s["label_hist"] == [[2, 1, 0], [0, 0, 3], [0, 0, 0]]
    assert s["size_mean"] == 2.0 and s["size_min"] == 0 and s["size_max"] == 3
    assert s["size_std"] == pytest.approx(math.sqrt(2))
    h0 = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert s["mean_label_entropy"] == pytest.approx(h0 / 2)  # the empty client is left out
    assert s["mean_max_class_fraction"] == pytest.approx((2 / 3 + 1) / 2)
    assert json.loads(json.dumps(s)) == s


BAD_CALLS = [
    lambda: iid(np.zeros((2, 3), int), 2, rng()),
    lambda: iid(np.array([0.0, 1.0]), 2, rng()),
    lambda: iid(np.array([0, -1]), 2, rng()),
    lambda: iid(BALANCED, 0, rng()),
    lambda: iid(BALANCED, 2.5, rng()),
    lambda: iid(BALANCED, True, rng()),
    lambda: dirichlet_per_class(BALANCED, 10, 0.0, rng()),
    lambda: dirichlet_per_class(BALANCED, 10, -1.0, rng()),
    lambda: dirichlet_per_class(BALANCED, 10, float("nan"), rng()),
    lambda: dirichlet_per_class(BALANCED, 10, float("inf"), rng()),
    lambda: dirichlet_per_class(BALANCED, 10, 1.0, rng(), min_size=-1),
    lambda: dirichlet_per_class(BALANCED, 10, 1.0, rng(), max_attempts=0),
    lambda: dirichlet_per_client(BALANCED, 10, 0.0, rng()),
    lambda: dirichlet_per_client(BALANCED, 10, 1.0, rng(), client_size=501),
    lambda: dirichlet_per_client(BALANCED, 10, 1.0, rng(), client_size=0),
    lambda: dirichlet_per_client(BALANCED[:5], 10, 1.0, rng()),
    lambda: partition_stats([np.arange(3)], np.array([0, 1, 5]), 3),
]


@pytest.mark.parametrize("call", BAD_CALLS, ids=[str(i) for i in range(len(BAD_CALLS))])
def test_bad_arguments(call):
    with pytest.raises(PartitionError) as info:
        call()
    assert "\n" not in str(info.value)
