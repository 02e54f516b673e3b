"""The robust aggregation rules of :mod:`fedbench.aggregator`: hand-computed cases, independent
numpy references (plain loops), hypothesis properties, non-finite rows, and argument checks."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fedbench.aggregator as agg
from fedbench.aggregator import _common

PROPS = settings(max_examples=50, deadline=None)


def t(rows, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


def close(actual, expected, **kw) -> None:
    expected = torch.as_tensor(np.asarray(expected), dtype=actual.dtype)
    torch.testing.assert_close(actual, expected, **kw)


@pytest.fixture(params=[_common.CHUNK_ELEMENTS, 7], ids=["one-chunk", "many-chunks"])
def chunks(request, monkeypatch):
    """Run a test with the default column chunks and with chunks of 7 elements (one or a few
    columns), so that the chunked loops are exercised on small inputs."""
    monkeypatch.setattr(_common, "CHUNK_ELEMENTS", request.param)


def random_stack(seed: int, n: int, d: int, offset: float = 0.0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    return torch.from_numpy(g.normal(size=(n, d)) + offset * g.normal(size=d))


# ----------------------------------------------------------------------------------------------
# independent references: plain numpy loops


def ref_sq_dists(u: np.ndarray) -> np.ndarray:
    n = len(u)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = float(np.sum((u[i] - u[j]) ** 2))
    return out


def ref_median(u):
    return np.median(u, axis=0)


def ref_trimmed_mean(u, f):
    return np.array([np.mean(np.sort(u[:, k])[f : len(u) - f]) for k in range(u.shape[1])])


def ref_closest_mean(col: np.ndarray, k: int) -> float:
    med = np.median(col)
    order = np.lexsort((col, np.abs(col - med)))  # by distance, then the smaller value
    return float(np.mean(col[order[:k]]))


def ref_meamed(u, f):
    return np.array([ref_closest_mean(u[:, k], len(u) - f) for k in range(u.shape[1])])


def ref_krum_scores(u, f):
    d = ref_sq_dists(u)
    n = len(u)
    return np.array([sum(sorted(d[i, j] for j in range(n) if j != i)[: max(n - f - 2, 0)]) for i in range(n)])


def ref_bulyan(u, f):
    pool, picked = list(range(len(u))), []
    for _ in range(len(u) - 2 * f):
        scores = ref_krum_scores(u[pool], f)
        j = int(np.argmin(scores))
        picked.append(pool.pop(j))
    sel = u[picked]
    beta = len(picked) - 2 * f
    return picked, np.array([ref_closest_mean(sel[:, k], beta) for k in range(u.shape[1])])


def ref_mda(u, f):
    d = np.sqrt(ref_sq_dists(u))
    best, best_diam = None, np.inf
    for subset in itertools.combinations(range(len(u)), len(u) - f):
        diam = max((d[i, j] for i, j in itertools.combinations(subset, 2)), default=0.0)
        if best is None or diam < best_diam:
            best, best_diam = subset, diam
    return list(best), u[list(best)].mean(axis=0)


def ref_geomed(u, weights=None, nu=1e-6, max_iter=100, tol=1e-7):
    a = np.ones(len(u)) if weights is None else np.asarray(weights, dtype=float)
    a = a / a.sum()
    z = (a[:, None] * u).sum(axis=0)
    obj = sum(a[i] * np.linalg.norm(u[i] - z) for i in range(len(u)))
    for _ in range(max_iter):
        beta = np.array([a[i] / max(nu, np.linalg.norm(u[i] - z)) for i in range(len(u))])
        z = (beta[:, None] * u).sum(axis=0) / beta.sum()
        new = sum(a[i] * np.linalg.norm(u[i] - z) for i in range(len(u)))
        done = abs(obj - new) <= tol * new
        obj = new
        if done:
            break
    return z


def ref_clip(x, tau):
    norm = np.linalg.norm(x)
    return x * min(1.0, tau / norm) if norm > 0 else x


def ref_cclip(u, tau, iterations, center):
    v = np.array(center, dtype=float)
    for _ in range(iterations):
        v = v + np.mean([ref_clip(ui - v, tau) for ui in u], axis=0)
    return v


def ref_norm_bound(u, tau, weights):
    w = np.ones(len(u)) if weights is None else np.asarray(weights, dtype=float)
    return sum(w[i] * ref_clip(u[i], tau) for i in range(len(u))) / w.sum()


def ref_fltrust(u, root):
    rn = np.linalg.norm(root)
    ts = np.array([max(0.0, float(ui @ root) / (np.linalg.norm(ui) * rn)) for ui in u])
    agg_ = sum(ts[i] * rn / np.linalg.norm(u[i]) * u[i] for i in range(len(u))) / ts.sum()
    return ts, agg_


def ref_dnc_keep(x, drop):
    """Rows kept by one DnC round on the coordinates ``x`` (already restricted)."""
    c = x - x.mean(axis=0)
    v = np.linalg.svd(c, full_matrices=False)[2][0]
    s = (c @ v) ** 2
    return set(np.argsort(s, kind="stable")[: len(x) - drop].tolist())


def ref_nnm(u, f):
    d = ref_sq_dists(u)
    out = []
    for i in range(len(u)):
        others = sorted((j for j in range(len(u)) if j != i), key=lambda j: (d[i, j], j))
        out.append(u[[i] + others[: len(u) - f - 1]].mean(axis=0))
    return np.array(out)


def ref_arc(u, f):
    n = len(u)
    norms = [np.linalg.norm(x) for x in u]
    order = sorted(range(n), key=lambda i: (norms[i], i))
    k = int(math.floor(2 * f * (n - f) / n))
    out = u.copy()
    if k:
        thr = norms[order[n - k - 1]]
        for i in order[n - k :]:
            out[i] = ref_clip(u[i], thr)
    return out


# ----------------------------------------------------------------------------------------------
# hand-computed cases


def test_mean_and_weighted_mean_by_hand():
    u = t([[1.0, 2.0], [3.0, 6.0]])
    close(agg.mean(u), [2.0, 4.0])
    close(agg.mean(u, weights=t([1.0, 3.0])), [2.5, 5.0])
    close(agg.weighted_mean(u, t([3.0, 1.0])), [1.5, 3.0])


def test_median_by_hand_even_count_averages_the_two_middle_values(chunks):
    u = t([[1, 5], [3, -1], [2, 0], [10, 4]])
    close(agg.median(u), [2.5, 2.0])  # torch.median would give [2, 0]
    close(agg.median(torch.cat([u, t([[0, 100]])])), [2.0, 4.0])


def test_trimmed_mean_and_meamed_by_hand(chunks):
    u = t([[1, 5], [3, -1], [2, 0], [10, 4], [0, 100]])
    close(agg.trimmed_mean(u, f=1), [2.0, 3.0])  # (1+2+3)/3, (0+4+5)/3
    close(agg.trimmed_mean(u, f=0), [3.2, 21.6])
    # column 0: median 2, 4 closest {0,1,2,3}; column 1: median 4, 4 closest {-1,0,4,5}
    close(agg.meamed(u, f=1), [1.5, 2.0])
    # f=2: 3 closest, {1,2,3} and {0,4,5}
    close(agg.meamed(u, f=2), [2.0, 3.0])


def test_meamed_tie_goes_to_the_smaller_value_whatever_the_row_order():
    # median 2; after {1, 3} both 0 and 4 are at distance 2: 0 wins
    for rows in ([[0.0], [1.0], [3.0], [4.0]], [[4.0], [3.0], [1.0], [0.0]]):
        close(agg.meamed(t(rows), f=1), [4.0 / 3.0])


def test_pairwise_sq_distances_by_hand():
    d = agg.pairwise_sq_distances(t([[0, 0], [3, 4], [6, 8]], torch.float32))
    assert d.dtype == torch.float64
    close(d, [[0, 25, 100], [25, 0, 25], [100, 25, 0]])


# the mean (4, 0) is exact, so the centred Gram matrix, hence the tied scores, are exact too
KRUM_ROWS = [[0, 0], [1, 0], [2, 0], [3, 0], [14, 0]]


def test_krum_family_by_hand():
    u = t(KRUM_ROWS)
    # f=1: the n - f - 2 = 2 nearest others; row 1: 1 + 1, row 0: 1 + 4, row 4: 121 + 144
    close(agg.krum_scores(u, f=1), [5.0, 2.0, 2.0, 5.0, 265.0])
    close(agg.krum(u, f=1), [1.0, 0.0])  # rows 1 and 2 tie: the lower index
    assert agg.multikrum_select(u, f=1).tolist() == [1, 2, 0, 3]
    close(agg.multikrum(u, f=1), [1.5, 0.0])
    close(agg.multikrum(u, f=1, m=2), [1.5, 0.0])
    close(agg.multikrum(u, f=1, m=1), [1.0, 0.0])


def test_bulyan_by_hand():
    # rows (x, 2x) with x = 0, 1, 3, 4, 10, 100, -104 (mean 2: exact ties); f=1 -> theta=5, beta=3.
    # Iterated Krum on x (distances are 5 x^2 apart, same order): pool of 7, 4 neighbours: x=4
    # scores 16+9+1+36=62, x=3 63 -> 4; then 3 (3 neighbours, 62), 1 (2 neighbours, 82),
    # then 0 and 10 tie at 1 neighbour (100): 0 has the lower index; then 10 (0 neighbours).
    x = [0, 1, 3, 4, 10, 100, -104]
    u = t([[v, 2 * v] for v in x])
    assert agg.bulyan_select(u, f=1).tolist() == [3, 2, 1, 0, 4]
    # selected {0, 1, 3, 4, 10}: median 3, the 3 closest {1, 3, 4}
    close(agg.bulyan(u, f=1), [8 / 3, 16 / 3])


def test_mda_by_hand(chunks):
    # subsets of 3 of {0, 1, 3, 10}: diameters 3, 10, 10, 9
    u = t([[0, 0], [1, 0], [3, 0], [10, 0]])
    assert agg.mda_select(u, f=1).tolist() == [0, 1, 2]
    close(agg.mda(u, f=1), [4 / 3, 0.0])
    close(agg.mda(u, f=0), [3.5, 0.0])
    # {0, 1, 2} and {1, 2, 3} tie at diameter 2: the first in combinations order wins
    # (with many chunks, each subset is its own batch)
    assert agg.mda_select(t([[0], [1], [2], [3]]), f=1).tolist() == [0, 1, 2]


def test_geomed_by_hand():
    line = t([[0, 0], [1, 0], [5, 0]])
    close(agg.geomed(line, nu=1e-9, max_iter=1000, tol=0.0), [1.0, 0.0], atol=1e-6, rtol=0)
    # weights 1, 1, 3: the heavy point is the weighted median
    close(agg.geomed(line, weights=t([1, 1, 3]), nu=1e-9, max_iter=1000, tol=0.0), [5.0, 0.0], atol=1e-6, rtol=0)
    square = t([[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]])
    close(agg.geomed(square), [1.0, 1.0])
    res = agg.geomed_solve(square)
    assert res.iterations == 1 and res.converged  # the mean is already the median


def test_cclip_by_hand():
    u = t([[3, 4], [0, 0]])
    close(agg.cclip(u, tau=1.0), [0.3, 0.4])  # (clip([3,4]) + 0) / 2
    # second step from [0.3, 0.4]: [2.7, 3.6] clips to [0.6, 0.8], [-0.3, -0.4] is inside
    close(agg.cclip(u, tau=1.0, iterations=2), [0.45, 0.6])
    close(agg.cclip(u, tau=1.0, center=t([3, 4])), [2.7, 3.6])
    close(agg.cclip(u, tau=math.inf), [1.5, 2.0])


def test_norm_bound_by_hand():
    u = t([[3, 4], [0, 1]])
    close(agg.norm_bound(u, tau=1.0), [0.3, 0.9])
    close(agg.norm_bound(u, tau=1.0, weights=t([1, 3])), [0.15, 0.95])


def test_fltrust_by_hand():
    u = t([[2, 0], [0, 3], [-1, 0], [3, 4]])
    root = t([1, 0])
    close(agg.fltrust_scores(u, root), [1.0, 0.0, 0.0, 0.6])
    # (1 * [1, 0] + 0.6 * [0.6, 0.8]) / 1.6
    close(agg.fltrust(u, root=root), [0.85, 0.3])
    close(agg.fltrust(u, root=2 * root), [1.7, 0.6])  # rescaled to the root's norm
    close(agg.fltrust(t([[0, 1], [-1, 0]]), root=root), [0.0, 0.0])  # all scores 0
    close(agg.fltrust(u, root=t([0, 0])), [0.0, 0.0])


def test_dnc_by_hand():
    # centred along x: scores (x - 2.5)^2 = 6.25, 2.25, 12.25, 56.25; f=1 drops row 3
    u = t([[0, 0], [1, 0], [-1, 0], [10, 0]])
    assert agg.dnc_select(u, f=1).tolist() == [0, 1, 2]
    close(agg.dnc(u, f=1), [0.0, 0.0])
    close(agg.dnc(u, f=1, filter_frac=0.0), [2.5, 0.0])


def test_pre_aggregation_by_hand():
    u = t([[3, 4], [0, 1], [6, 8], [0, 2]])
    close(agg.clip(u, tau=1.0), [[0.6, 0.8], [0, 1], [0.6, 0.8], [0, 1]])
    # f=1: k = floor(2*1*3/4) = 1, the largest row clipped to the next norm, 5
    close(agg.arc(u, f=1), [[3, 4], [0, 1], [3, 4], [0, 2]])
    # f=2: k = floor(2*2*2/4) = 2, rows of norm 10 and 5 clipped to norm 2
    close(agg.arc(u, f=2), [[1.2, 1.6], [0, 1], [1.2, 1.6], [0, 2]])
    close(agg.arc(u, f=0), u)
    v = t([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    # ByzFL's documented example: row 1's nearest other is a tie (27 and 27), the lower index wins
    close(agg.nnm(v, f=1), [[2.5, 3.5, 4.5], [2.5, 3.5, 4.5], [5.5, 6.5, 7.5]])
    close(agg.bucketing(u, s=4), [[2.25, 3.75]])
    close(agg.bucketing(u, s=10), [[2.25, 3.75]])


def test_bucketing_follows_the_generators_permutation():
    u = random_stack(0, 7, 3)
    out = agg.bucketing(u, s=3, generator=torch.Generator().manual_seed(5))
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(5)).tolist()
    expected = [u[perm[0:3]].mean(0), u[perm[3:6]].mean(0), u[perm[6:7]].mean(0)]
    close(out, torch.stack(expected).numpy())


# ----------------------------------------------------------------------------------------------
# against the numpy references on random stacks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coordinate_rules_match_reference(seed, chunks):
    n = 7 + seed
    u = random_stack(seed, n, 5)
    u[0, 0] = u[1, 0]  # a duplicate value
    x = u.numpy()
    close(agg.median(u), ref_median(x))
    for f in range(0, (n - 1) // 2 + 1):
        close(agg.trimmed_mean(u, f=f), ref_trimmed_mean(x, f))
        close(agg.meamed(u, f=f), ref_meamed(x, f))


@pytest.mark.parametrize("seed", [0, 1])
def test_distance_rules_match_reference(seed, chunks):
    n = 11
    u = random_stack(seed, n, 6, offset=50.0)
    u[5] = u[2]  # an exact duplicate
    x = u.numpy()
    close(agg.pairwise_sq_distances(u), ref_sq_dists(x), rtol=1e-9, atol=1e-9)
    for f in (0, 1, 2, 4):
        close(agg.krum_scores(u, f=f), ref_krum_scores(x, f), rtol=1e-9, atol=1e-9)
        scores = ref_krum_scores(x, f)
        order = np.argsort(scores, kind="stable")
        assert agg.multikrum_select(u, f=f).tolist() == order[: n - f].tolist()
        close(agg.krum(u, f=f), x[order[0]])
        close(agg.multikrum(u, f=f, m=3), x[order[:3]].mean(0))
    for f in (0, 1, 2):
        picked, expected = ref_bulyan(x, f)
        assert agg.bulyan_select(u, f=f).tolist() == picked
        close(agg.bulyan(u, f=f), expected)
    for f in (1, 2, 3):
        chosen, expected = ref_mda(x[:8], f)
        assert agg.mda_select(u[:8], f=f).tolist() == chosen
        close(agg.mda(u[:8], f=f), expected)


def test_distances_in_float32_are_accurate_despite_a_large_common_offset():
    u64 = random_stack(3, 12, 3000, offset=1000.0) * 0.01
    d = agg.pairwise_sq_distances(u64.float())
    ref = ref_sq_dists(u64.float().double().numpy())
    off = ~np.eye(12, dtype=bool)
    assert np.max(np.abs(d.numpy() - ref)[off] / ref[off]) < 1e-5  # a naive float32 |a|^2 - 2ab: ~1


@pytest.mark.parametrize("seed", [0, 1])
def test_geomed_matches_weiszfeld_reference(seed):
    u = random_stack(seed, 9, 4)
    u[3] *= 20
    x = u.numpy()
    close(agg.geomed(u), ref_geomed(x), rtol=1e-8, atol=1e-8)
    w = np.arange(1, 10, dtype=float)
    close(
        agg.geomed(u, weights=torch.from_numpy(w), nu=1e-3, max_iter=7), ref_geomed(x, w, 1e-3, 7), rtol=1e-8, atol=1e-8
    )
    res = agg.geomed_solve(u, max_iter=3, tol=0.0)
    assert res.iterations == 3 and not res.converged
    close(res.value, ref_geomed(x, max_iter=3, tol=0.0))
    close((res.weights[:, None] * u).sum(0), res.value.numpy())


@pytest.mark.parametrize("seed", [0, 1])
def test_clipping_trust_and_dnc_match_reference(seed, chunks):
    u = random_stack(seed, 8, 5) * torch.linspace(0.2, 3.0, 8)[:, None].double()
    x = u.numpy()
    center = x[0] * 0.5
    close(agg.cclip(u, tau=1.5, iterations=3, center=torch.from_numpy(center)), ref_cclip(x, 1.5, 3, center))
    close(agg.cclip(u, tau=0.7), ref_cclip(x, 0.7, 1, np.zeros(5)))
    w = np.linspace(1, 2, 8)
    close(agg.norm_bound(u, tau=1.0, weights=torch.from_numpy(w)), ref_norm_bound(x, 1.0, w))
    close(agg.norm_bound(u, tau=2.0), ref_norm_bound(x, 2.0, None))
    root = x[1:].mean(axis=0)
    ts, expected = ref_fltrust(x, root)
    close(agg.fltrust_scores(u, torch.from_numpy(root)), ts)
    close(agg.fltrust(u, root=torch.from_numpy(root)), expected)
    for f in (1, 2, 3):
        keep = sorted(ref_dnc_keep(x, f))
        assert agg.dnc_select(u, f=f).tolist() == keep
        close(agg.dnc(u, f=f), x[keep].mean(0))


def test_dnc_draws_coordinates_from_the_generator_and_intersects_rounds():
    u = random_stack(4, 10, 40)
    x = u.numpy()
    g = torch.Generator().manual_seed(11)
    kept = None
    for _ in range(3):
        cols = torch.randperm(40, generator=g)[:6].sort().values.numpy()
        keep = ref_dnc_keep(x[:, cols], 2)
        kept = keep if kept is None else kept & keep
    chosen = agg.dnc_select(u, f=2, generator=torch.Generator().manual_seed(11), iterations=3, sub_dim=6)
    assert chosen.tolist() == sorted(kept)
    again = agg.dnc(u, f=2, generator=torch.Generator().manual_seed(11), iterations=3, sub_dim=6)
    close(again, x[sorted(kept)].mean(0))


def test_dnc_with_an_empty_intersection_keeps_the_rows_kept_most_often():
    u = random_stack(6, 4, 30)
    chosen = agg.dnc_select(u, f=3, generator=torch.Generator().manual_seed(0), iterations=6, sub_dim=2)
    assert 1 <= len(chosen) <= 4


@pytest.mark.parametrize("seed", [0, 1])
def test_pre_aggregation_matches_reference(seed):
    u = random_stack(seed, 9, 4) * torch.linspace(0.5, 4.0, 9)[:, None].double()
    u[7] = u[2]
    x = u.numpy()
    for f in (0, 1, 3, 4):
        close(agg.nnm(u, f=f), ref_nnm(x, f))
        close(agg.arc(u, f=f), ref_arc(x, f))
    close(agg.clip(u, tau=1.3), np.array([ref_clip(r, 1.3) for r in x]))


def test_float32_in_float32_out():
    u = random_stack(0, 11, 5).float()
    for out in (
        agg.mean(u),
        agg.median(u),
        agg.trimmed_mean(u, f=2),
        agg.meamed(u, f=2),
        agg.krum(u, f=2),
        agg.multikrum(u, f=2),
        agg.bulyan(u, f=2),
        agg.mda(u, f=1),
        agg.geomed(u),
        agg.cclip(u, tau=1.0),
        agg.norm_bound(u, tau=1.0),
        agg.fltrust(u, root=u[0]),
        agg.dnc(u, f=2),
    ):
        assert out.dtype == torch.float32 and out.shape == (5,)
    for out in (agg.nnm(u, f=2), agg.clip(u, tau=1.0), agg.arc(u, f=2), agg.bucketing(u, s=2)):
        assert out.dtype == torch.float32 and out.shape[1] == 5


# ----------------------------------------------------------------------------------------------
# hypothesis properties

finite_floats = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
wild_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e30, -1e30, 0.0]))


@st.composite
def honest_and_attackers(draw, max_n=11, d=3):
    n = draw(st.integers(1, max_n))
    f = draw(st.integers(0, (n - 1) // 2))
    honest = draw(st.lists(st.lists(finite_floats, min_size=d, max_size=d), min_size=n - f, max_size=n - f))
    attack = draw(st.lists(st.lists(wild_floats, min_size=d, max_size=d), min_size=f, max_size=f))
    order = draw(st.permutations(range(n)))
    rows = np.array(honest + attack, dtype=float).reshape(n, d)[list(order)]
    return torch.from_numpy(rows), np.array(honest, dtype=float).reshape(n - f, d), f


@PROPS
@given(honest_and_attackers())
def test_median_and_trimmed_mean_stay_in_the_honest_range(case):
    u, honest, f = case
    lo, hi = honest.min(axis=0), honest.max(axis=0)
    for out in (agg.median(u), agg.trimmed_mean(u, f=f)):  # not meamed: its window may pass an end
        assert torch.isfinite(out).all()
        assert np.all(out.numpy() >= lo - 1e-9) and np.all(out.numpy() <= hi + 1e-9)


@PROPS
@given(
    st.integers(0, 3).flatmap(
        lambda f: st.tuples(
            st.just(f),
            st.lists(st.lists(st.floats(-1, 1), min_size=2, max_size=2), min_size=f + 3, max_size=f + 6),
            st.lists(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=2), min_size=f, max_size=f),
            st.booleans(),
        )
    )
)
def test_krum_picks_an_honest_vector_when_attackers_are_far(case):
    f, honest, attack, clustered = case
    far = np.array([[1e4 + abs(a), 1e4 + abs(b)] for a, b in attack]).reshape(f, 2)
    if clustered and f:
        far[:] = far[0]  # identical attackers are each other's nearest neighbours
    rows = np.concatenate([np.array(honest), far])
    u = torch.from_numpy(rows)
    assert int(agg.krum_scores(u, f=f).argmin()) < len(honest)
    assert any(np.array_equal(agg.krum(u, f=f).numpy(), h) for h in np.array(honest))


@PROPS
@given(st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_bucketing_with_s_1_is_a_permutation_of_the_rows(n, seed):
    u = random_stack(seed % 1000, n, 3)
    out = agg.bucketing(u, s=1, generator=torch.Generator().manual_seed(seed))
    assert out.shape == u.shape
    key = lambda a: sorted(map(tuple, a.tolist()))  # noqa: E731
    assert key(out) == key(u)  # exact: each bucket is one row divided by 1


@PROPS
@given(st.integers(1, 10), st.integers(1, 4), st.integers(0, 999))
def test_nnm_with_f_0_gives_every_row_the_mean(n, d, seed):
    u = random_stack(seed, n, d)
    close(agg.nnm(u, f=0), u.mean(0).expand(n, d).numpy())


@PROPS
@given(st.integers(1, 9), st.integers(1, 6), st.integers(0, 999), st.sampled_from([0.0, 1.0, 1e4]))
def test_pairwise_distances_match_a_direct_computation(n, d, seed, offset):
    u = random_stack(seed, n, d, offset)
    direct = ((u[:, None, :] - u[None, :, :]) ** 2).sum(-1)
    dist = agg.pairwise_sq_distances(u)
    torch.testing.assert_close(dist, direct, rtol=1e-9, atol=1e-9 * (1 + offset**2))
    assert bool((dist.diagonal() == 0).all()) and bool((dist >= 0).all())
    assert torch.equal(dist, dist.T)


@PROPS
@given(st.integers(3, 9), st.integers(0, 999))
def test_coordinate_rules_ignore_the_row_order(n, seed):
    u = random_stack(seed, n, 3).round(decimals=0)  # many ties
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    f = (n - 1) // 2
    for rule in (agg.median, lambda x: agg.trimmed_mean(x, f=f), lambda x: agg.meamed(x, f=f)):
        torch.testing.assert_close(rule(u), rule(u[perm]))


# ----------------------------------------------------------------------------------------------
# non-finite rows

N, F = 11, 2


def nonfinite_stack(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """11 rows, rows 3 and 8 non-finite (an all-NaN row; a row with +inf, -inf and one NaN)."""
    u = random_stack(seed, N, 4)
    u[3] = math.nan
    u[8] = t([math.inf, -math.inf, math.nan, 1.0])
    bad = torch.zeros(N, dtype=torch.bool)
    bad[[3, 8]] = True
    return u, bad


ROBUST = {
    "median": lambda u: agg.median(u),
    "trimmed_mean": lambda u: agg.trimmed_mean(u, f=F),
    "meamed": lambda u: agg.meamed(u, f=F),
    "krum": lambda u: agg.krum(u, f=F),
    "multikrum": lambda u: agg.multikrum(u, f=F),
    "bulyan": lambda u: agg.bulyan(u, f=F),
    "mda": lambda u: agg.mda(u, f=F),
    "geomed": lambda u: agg.geomed(u),
    "cclip": lambda u: agg.cclip(u, tau=1.0, iterations=2),
    "norm_bound": lambda u: agg.norm_bound(u, tau=1.0),
    "fltrust": lambda u: agg.fltrust(u, root=torch.ones(4, dtype=u.dtype)),
    "dnc": lambda u: agg.dnc(u, f=F, generator=torch.Generator().manual_seed(0), iterations=2, sub_dim=3),
}


@pytest.mark.parametrize("name", sorted(ROBUST))
def test_robust_rules_stay_finite_with_f_non_finite_rows(name, chunks):
    u, _ = nonfinite_stack()
    assert torch.isfinite(ROBUST[name](u)).all()
    assert torch.isfinite(ROBUST[name](u.float())).all()


def test_the_mean_propagates_non_finite_rows():
    u, _ = nonfinite_stack()
    assert torch.isnan(agg.mean(u)).all()


@pytest.mark.parametrize("name", ["geomed", "cclip", "norm_bound", "fltrust"])
def test_non_finite_rows_have_zero_influence(name):
    u, bad = nonfinite_stack(1)
    close(ROBUST[name](u), ROBUST[name](u[~bad]).numpy())


def test_selection_rules_never_pick_a_non_finite_row():
    u, bad = nonfinite_stack(2)
    bad_rows = set(bad.nonzero().flatten().tolist())
    assert not bad_rows & set(agg.multikrum_select(u, f=F).tolist())
    assert not bad_rows & set(agg.bulyan_select(u, f=F).tolist())
    assert not bad_rows & set(agg.mda_select(u, f=F).tolist())
    assert not bad_rows & set(agg.dnc_select(u, f=F, filter_frac=0.0).tolist())
    scores = agg.krum_scores(u, f=F)
    assert torch.isinf(scores[bad]).all() and torch.isfinite(scores[~bad]).all()
    d = agg.pairwise_sq_distances(u)
    assert torch.isinf(d[3, 8]) and torch.isinf(d[3, 0]) and d[3, 3] == 0 and torch.isfinite(d[~bad][:, ~bad]).all()


def test_a_finite_row_whose_sum_overflows_is_still_finite():
    u = torch.tensor([[3e38, 3e38], [0.0, 0.5]])  # float32: the row sum is inf, the entries are not
    close(agg.clip(u, tau=1.0), [[0.5**0.5, 0.5**0.5], [0.0, 0.5]])
    close(agg.norm_bound(u, tau=1.0), [0.5**1.5, 0.5**1.5 + 0.25])
    close(agg.cclip(u, tau=1.0), [0.5**1.5, 0.5**1.5 + 0.25])


def test_coordinate_rules_sort_nan_as_plus_infinity():
    close(agg.median(t([[1.0], [math.nan], [3.0]])), [3.0])
    close(agg.trimmed_mean(t([[1.0], [math.nan], [3.0], [-math.inf], [2.0]]), f=1), [2.0])


def test_pre_aggregation_with_non_finite_rows():
    u, bad = nonfinite_stack(3)
    clipped = agg.clip(u, tau=1.0)
    assert torch.isfinite(clipped).all() and (clipped[bad] == 0).all()
    close(clipped[~bad], agg.clip(u[~bad], tau=1.0).numpy())
    arced = agg.arc(u, f=F)
    assert torch.isfinite(arced).all() and (arced[bad] == 0).all()
    mixed = agg.nnm(u, f=F)
    # exactly n - f finite rows: every row's neighbourhood is all of them
    close(mixed, u[~bad].mean(0).expand(N, 4).numpy())
    one_bad = u.clone()
    one_bad[8] = random_stack(9, 1, 4)[0]
    mixed = agg.nnm(one_bad, f=F)
    assert torch.isfinite(mixed).all()
    good = torch.arange(N) != 3
    to_mean = ((one_bad[good] - one_bad[good].mean(0)) ** 2).sum(1)
    nearest = good.nonzero().flatten()[torch.sort(to_mean, stable=True).indices[: N - F]]
    close(mixed[3], one_bad[nearest].mean(0).numpy())  # the NaN row: the rows nearest the mean
    buckets = agg.bucketing(u, s=2, generator=torch.Generator().manual_seed(1))
    assert int((~torch.isfinite(buckets).all(1)).sum()) <= 2


# ----------------------------------------------------------------------------------------------
# argument checks

TOO_SMALL = [
    ("trimmed_mean", lambda u: agg.trimmed_mean(u, f=2), 4, "trimmed_mean needs n > 2f, got n=4, f=2"),
    ("meamed", lambda u: agg.meamed(u, f=2), 4, "meamed needs n > 2f, got n=4, f=2"),
    ("krum", lambda u: agg.krum(u, f=2), 6, "krum needs n > 2f + 2, got n=6, f=2"),
    ("krum_scores", lambda u: agg.krum_scores(u, f=2), 6, "krum needs n > 2f + 2, got n=6, f=2"),
    ("multikrum", lambda u: agg.multikrum(u, f=2), 6, "multikrum needs n > 2f + 2, got n=6, f=2"),
    ("multikrum_select", lambda u: agg.multikrum_select(u, f=1), 4, "multikrum needs n > 2f + 2, got n=4, f=1"),
    ("bulyan", lambda u: agg.bulyan(u, f=1), 6, "bulyan needs n >= 4f + 3, got n=6, f=1"),
    ("bulyan_select", lambda u: agg.bulyan_select(u, f=2), 10, "bulyan needs n >= 4f + 3, got n=10, f=2"),
    ("mda", lambda u: agg.mda(u, f=3), 3, "mda needs n > f, got n=3, f=3"),
    ("mda_select", lambda u: agg.mda_select(u, f=4), 4, "mda needs n > f, got n=4, f=4"),
    ("dnc", lambda u: agg.dnc(u, f=2), 2, "dnc needs n > floor(filter_frac * f), got n=2, f=2"),
    (
        "dnc_select",
        lambda u: agg.dnc_select(u, f=3, filter_frac=0.7),
        2,
        "dnc needs n > floor(filter_frac * f), got n=2, f=3",
    ),
    ("nnm", lambda u: agg.nnm(u, f=3), 3, "nnm needs n > f, got n=3, f=3"),
    ("arc", lambda u: agg.arc(u, f=3), 3, "arc needs n > f, got n=3, f=3"),
]


@pytest.mark.parametrize("name, call, n, message", TOO_SMALL, ids=[c[0] for c in TOO_SMALL])
def test_too_few_rows_raise_a_value_error_naming_the_rule(name, call, n, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call(random_stack(0, n, 3))
    call(random_stack(0, n + 1, 3))  # one more row is enough


def test_dnc_keeps_a_row_at_the_boundary():
    assert len(agg.dnc_select(random_stack(0, 2, 3), f=3, filter_frac=0.5)) == 1


def test_mda_refuses_too_many_subsets():
    assert math.comb(40, 10) > agg.MDA_MAX_SUBSETS
    with pytest.raises(ValueError, match=r"^mda needs C\(n, f\) <= 1,000,000 subsets, got C\(40, 10\) = 847,660,528$"):
        agg.mda(random_stack(0, 40, 2), f=10)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda u: agg.krum(u, f=-1), "krum needs an integer f >= 0"),
        (lambda u: agg.trimmed_mean(u, f=1.5), "trimmed_mean needs an integer f >= 0"),
        (lambda u: agg.multikrum(u, f=1, m=0), "multikrum needs 1 <= m <= n"),
        (lambda u: agg.multikrum(u, f=1, m=11), "multikrum needs 1 <= m <= n"),
        (lambda u: agg.cclip(u, tau=0.0), "cclip needs tau > 0"),
        (lambda u: agg.cclip(u, tau=1.0, iterations=0), "cclip needs an integer iterations >= 1"),
        (lambda u: agg.cclip(u, tau=1.0, center=torch.zeros(2)), "cclip needs a centre of shape"),
        (lambda u: agg.norm_bound(u, tau=-1.0), "norm_bound needs tau > 0"),
        (lambda u: agg.norm_bound(u, tau=1.0, weights=torch.ones(3)), "norm_bound needs \\(n,\\) finite"),
        (lambda u: agg.geomed(u, weights=-torch.ones(10)), "geomed needs \\(n,\\) finite non-negative"),
        (lambda u: agg.geomed(u, nu=0.0), "geomed needs nu > 0"),
        (lambda u: agg.geomed(u, max_iter=0), "geomed needs an integer max_iter >= 1"),
        (lambda u: agg.fltrust(u, root=torch.ones(2)), "fltrust needs a root update of shape"),
        (lambda u: agg.clip(u, tau=0), "clip needs tau > 0"),
        (lambda u: agg.bucketing(u, s=0), "bucketing needs an integer s >= 1"),
        (lambda u: agg.dnc(u, f=1, sub_dim=0), "dnc needs an integer sub_dim >= 1"),
        (lambda u: agg.dnc(u, f=1, filter_frac=-1.0), "dnc needs a finite filter_frac >= 0"),
        (lambda u: agg.median(u[0]), "median needs a floating \\(n, d\\) tensor"),
        (lambda u: agg.median(u[:0]), "median needs at least one update"),
        (lambda u: agg.krum(u.long(), f=1), "krum needs a floating \\(n, d\\) tensor"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_the_rule(call, message):
    with pytest.raises(ValueError, match=message):
        call(random_stack(0, 10, 3))


def test_every_public_name_is_the_function_not_a_module():
    for name in agg.__all__:
        assert not isinstance(getattr(agg, name), type(agg)), name
    assert agg.median.__module__ == "fedbench.aggregator.coordinate"
