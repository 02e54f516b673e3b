"""Known-answer tests written to kill surviving mutants of :mod:`fedbench.aggregator` (mutation
testing, docs/testing.md). Every expected value is hand-computed in the comments; none compares
the code with itself."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import fedbench.aggregator as agg


def t(rows, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


# ---- every rule names itself when the stack is not a floating (n, d) tensor ------------------
NAMED = [
    ("mean", lambda u: agg.mean(u)),
    ("median", lambda u: agg.median(u)),
    ("trimmed_mean", lambda u: agg.trimmed_mean(u, f=0)),
    ("meamed", lambda u: agg.meamed(u, f=0)),
    ("pairwise_sq_distances", lambda u: agg.pairwise_sq_distances(u)),
    ("krum", lambda u: agg.krum(u, f=0)),
    ("krum", lambda u: agg.krum_scores(u, f=0)),
    ("multikrum", lambda u: agg.multikrum(u, f=0)),
    ("bulyan", lambda u: agg.bulyan(u, f=0)),
    ("mda", lambda u: agg.mda(u, f=0)),
    ("cclip", lambda u: agg.cclip(u, tau=1.0)),
    ("norm_bound", lambda u: agg.norm_bound(u, tau=1.0)),
    ("geomed", lambda u: agg.geomed(u)),
    ("fltrust", lambda u: agg.fltrust(u, root=torch.ones(3, dtype=torch.float64))),
    ("fltrust", lambda u: agg.fltrust_scores(u, torch.ones(3, dtype=torch.float64))),
    ("dnc", lambda u: agg.dnc(u, f=0)),
    ("bucketing", lambda u: agg.bucketing(u, s=1)),
    ("nnm", lambda u: agg.nnm(u, f=0)),
    ("clip", lambda u: agg.clip(u, tau=1.0)),
    ("arc", lambda u: agg.arc(u, f=0)),
]


@pytest.mark.parametrize("rule, call", NAMED, ids=[f"{i}-{c[0]}" for i, c in enumerate(NAMED)])
def test_every_rule_names_itself_for_a_one_dimensional_stack(rule, call):
    message = f"{rule} needs a floating (n, d) tensor of updates, got (3,)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call(torch.ones(3, dtype=torch.float64))


def test_multikrum_mean_of_rows_uses_the_updates_precision():
    # f = 0, n = 3: m = n - f = 3, every row is kept, the result is (3 + 6 + 9) / 3 = 6 exactly
    # in float64 (1/3 * 3 = 1, 1/3 * 6 = 2, 1/3 * 9 = 3 round to exact integers). Coefficients
    # 1/3 rounded to float32 (0.3333333433) would give 6.00000018.
    out = agg.multikrum(t([[3.0], [6.0], [9.0]]), f=0)
    assert out.dtype == torch.float64
    assert abs(float(out[0]) - 6.0) < 1e-12


# ---- MDA: the subset limit is inclusive, and subsets are gathered in bounded batches ---------
def test_mda_accepts_exactly_the_maximum_number_of_subsets(monkeypatch):
    from fedbench.aggregator import distance

    monkeypatch.setattr(distance, "MDA_MAX_SUBSETS", 10)
    # n = 5, f = 2: C(5, 2) = 10 subsets, allowed ("C(n, f) <= MDA_MAX_SUBSETS")
    u = t([[0.0], [1.0], [2.0], [10.0], [20.0]])
    # the three rows of minimum diameter are 0, 1, 2 (diameter 2); their mean is 1
    assert agg.mda_select(u, f=2).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"^mda needs C\(n, f\) <= 10 subsets, got C\(6, 2\) = 15$"):
        agg.mda(t([[0.0], [1.0], [2.0], [10.0], [20.0], [30.0]]), f=2)


@pytest.mark.parametrize(
    "chunk, sizes",
    [
        # k = 3: batch = max(1, 4 * 1 // 9) = 1 subset per gather: ten gathers of 3 indices
        (1, [3] * 10 + [0]),
        # batch = max(1, 4 * 9 // 9) = 4 subsets per gather: 4 + 4 + 2 subsets of 3 indices
        (9, [12, 12, 6, 0]),
    ],
)
def test_mda_gathers_subsets_in_batches_of_four_chunks_over_k_squared(monkeypatch, chunk, sizes):
    import numpy as np

    from fedbench.aggregator import _common

    monkeypatch.setattr(_common, "CHUNK_ELEMENTS", chunk)
    seen = []
    fromiter = np.fromiter

    def spy(*args, **kwargs):
        out = fromiter(*args, **kwargs)
        seen.append(out.size)
        return out

    monkeypatch.setattr(np, "fromiter", spy)
    u = t([[0.0], [1.0], [2.0], [10.0], [20.0]])
    assert agg.mda(u, f=2).tolist() == [1.0]  # mean of rows 0, 1, 2
    assert seen == sizes


# ---- DnC ------------------------------------------------------------------------------------
def test_dnc_returns_the_single_kept_row():
    # n = 2, f = 1: one row kept. Centred rows are -/+ [1, 0], both score 1: the tie goes to the
    # lower index, so row 0 = [1, 0] is the aggregate.
    out = agg.dnc(t([[1.0, 0.0], [3.0, 0.0]]), f=1)
    assert out.tolist() == [1.0, 0.0]


def test_dnc_with_no_finite_row_returns_zeros_of_the_right_length():
    u = torch.full((3, 2), float("nan"), dtype=torch.float64)
    assert agg.dnc(u, f=0).tolist() == [0.0, 0.0]
    assert agg.dnc_select(u, f=0).tolist() == []  # non-finite rows are never kept


@pytest.mark.parametrize("fn", [agg.dnc, agg.dnc_select])
def test_dnc_defaults_draw_one_set_of_10000_coordinates(fn):
    # d = 10001 > sub_dim = 10000: each of the iterations (1 by default) draws one permutation of
    # the d coordinates from the generator; sub_dim = 10001 would draw none, iterations = 2 two.
    d = 10001
    u = torch.zeros(5, d, dtype=torch.float64)
    u[:, 0] = torch.tensor([0.0, 1.0, 2.0, 3.0, 100.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    fn(u, f=1, generator=g)
    expected = torch.Generator().manual_seed(0)
    torch.randperm(d, generator=expected)
    assert torch.equal(g.get_state(), expected.get_state())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        # an infinite filter_frac is refused before floor(inf * f) is tried (OverflowError)
        ({"f": 1, "filter_frac": float("inf")}, "dnc needs a finite filter_frac >= 0, got filter_frac=inf"),
        # a non-integer f is refused by the f check, not by floor(filter_frac * None)
        ({"f": None}, "dnc needs an integer f >= 0, got f=None"),
        ({"f": 1, "iterations": 0}, "dnc needs an integer iterations >= 1, got iterations=0"),
        ({"f": 1, "iterations": True}, "dnc needs an integer iterations >= 1, got iterations=True"),
        ({"f": 1, "sub_dim": True}, "dnc needs an integer sub_dim >= 1, got sub_dim=True"),
    ],
)
def test_dnc_argument_errors_are_exact(kwargs, message):
    u = t([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        agg.dnc(u, **kwargs)


def test_dnc_breaks_score_ties_by_the_lower_index_beyond_small_n():
    # 20 one-dimensional rows, ten at -1 and ten at +1: the mean is 0, v = +-1, every score is
    # exactly 1. f = 5 drops 5 rows; the tie goes to the lower index, so rows 0..14 are kept.
    # (torch's CPU sort is not stable for n = 20 unless asked to be.)
    u = t([[-1.0], [1.0]] * 10)
    assert agg.dnc_select(u, f=5).tolist() == list(range(15))


def test_dnc_with_sub_dim_equal_to_d_draws_nothing():
    # "all of them, no draw, when sub_dim >= d": the generator is left untouched at sub_dim = d
    u = t([[0.0, 1.0, 2.0], [1.0, 0.0, 2.0], [2.0, 2.0, 0.0], [9.0, 9.0, 9.0]])
    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    agg.dnc_select(u, f=1, sub_dim=3, generator=g)
    assert torch.equal(g.get_state(), before)


def test_dnc_takes_the_thin_svd(monkeypatch):
    # only the top right singular vector is used: the thin SVD of the centred (n, b) = (4, 6)
    # matrix has Vh of shape (4, 6); the full one would build a (b, b) = (6, 6) Vh (for
    # sub_dim = 10000 coordinates, an 800 MB matrix)
    shapes = []
    svd = torch.linalg.svd

    def spy(*args, **kwargs):
        out = svd(*args, **kwargs)
        shapes.append(tuple(out.Vh.shape))
        return out

    monkeypatch.setattr(torch.linalg, "svd", spy)
    u = torch.arange(24, dtype=torch.float64).reshape(4, 6) ** 2
    agg.dnc_select(u, f=1)
    assert shapes == [(4, 6)]


@pytest.mark.parametrize(
    "call",
    [lambda u, r: agg.fltrust(u, root=r), lambda u, r: agg.fltrust_scores(u, r)],
    ids=["fltrust", "fltrust_scores"],
)
def test_fltrust_root_of_the_wrong_shape_is_named_exactly(call):
    u = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^fltrust needs a root update of shape \(3,\), got \(2,\)$"):
        call(u, torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^fltrust needs a root update of shape \(3,\), got list$"):
        call(u, [1.0, 1.0, 1.0])


def test_fltrust_with_a_zero_update_and_a_root_of_another_dtype():
    # rows [0, 0] and [2, 0], root [1, 0] (float32, the updates float64): the zero row has no
    # direction, TS = 0; the other has cos = 1, TS = 1. agg = 1 * (|root| / |u|) u / 1
    # = (1 / 2) [2, 0] = [1, 0] (the total trust 1 is not "no trust").
    u = t([[0.0, 0.0], [2.0, 0.0]])
    root = torch.tensor([1.0, 0.0], dtype=torch.float32)
    assert agg.fltrust_scores(u, root).tolist() == [0.0, 1.0]
    assert agg.fltrust(u, root=root).tolist() == [1.0, 0.0]


def test_fltrust_root_norm_is_taken_in_float64():
    # float32 update [1, 0], float32 root [1e20, 1e20]: |root| = sqrt(2) 1e20 (its float32
    # square overflows); cos = 1e20 / sqrt(2) 1e20 = 1/sqrt(2), so the update is rescaled to
    # |root|: [sqrt(2) 1e20, 0]
    u = torch.tensor([[1.0, 0.0]])
    out = agg.fltrust(u, root=torch.tensor([1e20, 1e20]))
    torch.testing.assert_close(out, torch.tensor([2**0.5 * 1e20, 0.0]))


def test_fltrust_with_an_infinite_root_trusts_nobody():
    u = t([[1.0, 0.0], [0.0, 1.0]])
    root = t([float("inf"), 0.0])
    assert agg.fltrust_scores(u, root).tolist() == [0.0, 0.0]
    assert agg.fltrust(u, root=root).tolist() == [0.0, 0.0]


def test_norm_bound_with_all_weights_zero_is_zeros():
    # "with no finite row of positive weight the result is zeros" (not 0/0)
    u = t([[1.0, 2.0], [3.0, 4.0]])
    assert agg.norm_bound(u, tau=1.0, weights=torch.zeros(2)).tolist() == [0.0, 0.0]


def test_a_stage_without_state_ignores_a_centre_in_the_state_it_loads():
    from fedbench.aggregator.options import Median
    from fedbench.aggregator.stage import AggregatorStage

    stage = AggregatorStage(Median(), f=0, seed=0, dim=3, device=torch.device("cpu"))
    stage.load_state_dict({"center": torch.ones(3)})
    assert stage.center is None and stage.state_dict() == {}


def test_norm_bound_of_a_single_update_is_that_update_clipped():
    # one row [3, 4] (norm 5), tau = 1: clipped to [0.6, 0.8]; its weight 1 is the total
    torch.testing.assert_close(agg.norm_bound(t([[3.0, 4.0]]), tau=1.0), t([0.6, 0.8]))


# ---- geometric median ---------------------------------------------------------------------------
def test_geomed_of_a_single_update_is_that_update():
    r = agg.geomed_solve(t([[3.0, 4.0]]))
    assert r.value.tolist() == [3.0, 4.0] and r.weights.tolist() == [1.0]
    # the objective is 0 before and after the first update: |0 - 0| <= tol * 0 stops it there
    assert r.iterations == 1 and r.converged is True


def test_geomed_with_no_finite_row_does_no_iteration():
    nan = float("nan")
    r = agg.geomed_solve(t([[nan, 1.0], [1.0, float("inf")]]))
    assert r.value.tolist() == [0.0, 0.0]
    assert r.weights.tolist() == [0.0, 0.0]
    assert r.iterations == 0 and r.converged is True


def test_geomed_default_tolerance_reaches_the_median():
    # (0, 0), (1, 0), (0, 1), (0.1, 0.1): the unit vectors from (0.1, 0.1) to the other three
    # sum to (0.177, 0.177), of norm 0.25 < 1 (its own weight), so the geometric median is the
    # data point (0.1, 0.1). The start (the mean) is (0.275, 0.275); one step gets to 0.184.
    u = t([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.1, 0.1]])
    torch.testing.assert_close(agg.geomed(u), t([0.1, 0.1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(agg.geomed_solve(u).value, t([0.1, 0.1]), atol=1e-5, rtol=0)


def test_geomed_stops_after_100_iterations_by_default():
    # the median (0, 0) is a data point, which smoothed Weiszfeld approaches only slowly: with
    # tol = 0 it never stops on its own, so the default max_iter = 100 ends it
    u = t([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [10.0, 10.0]])
    r = agg.geomed_solve(u, tol=0.0)
    assert r.iterations == 100 and r.converged is False
    assert agg.geomed_solve(u, max_iter=1).iterations == 1  # max_iter = 1 is allowed


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_iter": True}, "geomed needs an integer max_iter >= 1, got max_iter=True"),
        ({"tol": -1.0}, "geomed needs tol >= 0, got tol=-1.0"),
    ],
)
def test_geomed_argument_errors_are_exact(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        agg.geomed(t([[0.0], [1.0]]), **kwargs)


def test_geomed_default_max_iter_is_100():
    # geomed has the same documented defaults as geomed_solve: with tol = 0 on the slow case
    # above, the value is the one after exactly 100 updates, not 101
    u = t([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [10.0, 10.0]])
    after_100 = agg.geomed_solve(u, tol=0.0, max_iter=100).value
    after_101 = agg.geomed_solve(u, tol=0.0, max_iter=101).value
    assert not torch.equal(after_100, after_101)
    assert torch.equal(agg.geomed(u, tol=0.0), after_100)


# ---- centred clipping: distances whose float32 norm overflows are redone in float64 -------------
def test_cclip_redoes_overflowing_distances_row_by_row():
    # float32 rows u1 = [3e38, 3e38], u2 = [3e38, 0], centre v0 = [1e38, 0]: u1 - v0 = [2e38, 3e38]
    # (|.| = sqrt(13) 1e38) and u2 - v0 = [2e38, 0] (|.| = 2e38) are finite but their float32 norms
    # overflow. tau = 1, n = 2: v1 = v0 + (1/2) sum_i (u_i - v0) / |u_i - v0|, whose second
    # coordinate is (1/2) * 3 / sqrt(13) = 0.41603 (the first stays 1e38 in float32).
    u = torch.tensor([[3e38, 3e38], [3e38, 0.0]])
    out = agg.cclip(u, tau=1.0, center=torch.tensor([1e38, 0.0]))
    assert out.dtype == torch.float32
    assert abs(float(out[1]) - 0.5 * 3 / 13**0.5) < 1e-4
    assert float(out[0]) == float(torch.tensor(1e38))


# ---- follow-up run (pre, clipping, coordinate, distance, _common, geometric, basic, stage) ------
def test_cclip_iterations_must_be_a_true_integer():
    u = t([[3.0, 4.0]])
    for bad in (True, 1.5):
        message = f"cclip needs an integer iterations >= 1, got iterations={bad!r}"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            agg.cclip(u, tau=1.0, iterations=bad)


def test_cclip_of_one_finite_row_and_of_none():
    # one row u = [3, 4], tau = 10, v0 = 0: n = 1 finite row, |u - v0| = 5 <= 10 (scale 1), so
    # v1 = v0 + (1/1) (u - v0) = [3, 4]
    assert agg.cclip(t([[3.0, 4.0]]), tau=10.0).tolist() == [3.0, 4.0]
    # no finite row: the result is the centre itself, whatever tau and iterations
    u = t([[float("inf"), 0.0], [float("nan"), 1.0]])
    assert agg.cclip(u, tau=1.0, iterations=3, center=t([1.0, 2.0])).tolist() == [1.0, 2.0]


def test_cclip_result_has_the_updates_dtype_with_a_centre_of_another_dtype():
    # float32 rows u1 = [3, 4], u2 = [1, 0], float64 centre v0 = 0, tau = 1: |u1| = 5 (scale 1/5),
    # |u2| = 1 (not > tau: scale 1); coefficients (1/5) / 2 = 0.1 and 1 / 2 = 0.5;
    # v1 = v0 (1 - 0.6) + 0.1 [3, 4] + 0.5 [1, 0] = [0.8, 0.4], in the updates' float32
    out = agg.cclip(t([[3.0, 4.0], [1.0, 0.0]], torch.float32), tau=1.0, center=torch.zeros(2, dtype=torch.float64))
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([0.8, 0.4]), rtol=0, atol=1e-6)


def test_bucketing_size_must_be_a_true_integer():
    u = t([[1.0], [2.0]])
    for bad in (True, 2.0):
        message = f"bucketing needs an integer s >= 1, got s={bad!r}"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            agg.bucketing(u, s=bad)


def test_clipping_at_an_infinite_tau_leaves_a_row_whose_norm_overflows():
    # float64 row [1e308, 1e308]: finite, but its norm (sqrt(2) 1e308) overflows to inf even in
    # float64. tau = inf: min(1, tau / |u|) = 1, the row is returned unchanged (inf / inf = NaN
    # would turn it into NaNs)
    u = t([[1e308, 1e308]])
    assert agg.clip(u, tau=math.inf).tolist() == [[1e308, 1e308]]


def test_row_norms_without_a_mask_and_in_the_rows_dtype():
    # no finite mask given: it is computed; |[3, 4]| = 5, a row with an inf has norm +inf
    assert agg.row_norms(t([[3.0, 4.0], [math.inf, 0.0]])).tolist() == [5.0, math.inf]
    # the norm is taken in the rows' dtype (float32) and only then widened: |[1, 1, 1]| = sqrt(3)
    # rounded to float32, 1.7320507764816284, not the float64 sqrt(3) = 1.7320508075688772 (which
    # a float64 redo of every row would give)
    f32_sqrt3 = float(np.float32(np.sqrt(np.float32(3.0))))
    assert f32_sqrt3 == 1.7320507764816284
    u32 = t([[1.0, 1.0, 1.0]], torch.float32)
    assert agg.row_norms(u32).tolist() == [f32_sqrt3]
    # distances to a centre likewise: |u - 0| of the same row
    assert agg.distances_to(u32, torch.zeros(3)).tolist() == [f32_sqrt3]


def test_row_norms_redo_overflowing_rows_one_by_one():
    # float32 rows [a, a] and [a, 0], a = float32(3e38) = 3.0000000054977558e38: both float32 norms
    # overflow and are redone in float64, each row on its own: sqrt(2) a and a
    a = float(np.float32(3e38))
    out = agg.row_norms(t([[3e38, 3e38], [3e38, 0.0]], torch.float32)).tolist()
    assert out[1] == a
    assert out[0] == pytest.approx(math.sqrt(2) * a, rel=1e-15)


def test_geomed_takes_float32_and_integer_sample_weights():
    # one row: its geometric median is itself, whatever the (positive) weight's dtype
    for w in (torch.tensor([2.0], dtype=torch.float32), torch.tensor([2])):
        assert agg.geomed(t([[3.0, 4.0]]), weights=w).tolist() == [3.0, 4.0]


def test_nnm_keeps_each_row_itself_first():
    # rows 0 and 0.5 (squared distance 0.25 < 1), f = 1: n - f = 1 neighbour, the row itself
    # (its own key is -1, below every distance), so the output is the input
    assert agg.nnm(t([[0.0], [0.5]]), f=1).tolist() == [[0.0], [0.5]]


def test_nnm_breaks_distance_ties_by_the_lower_index_beyond_small_n():
    # 32 one-dimensional rows: u0 = 0, u1 = -1, u2..u31 = +1; f = 30, so n - f = 2 neighbours:
    # the row itself and its nearest other row. u0 is at distance 1 from all 31 others (a tie):
    # the lower index, u1, wins, y0 = (0 - 1) / 2 = -0.5. u1's nearest is u0 (1, against 4):
    # y1 = -0.5. u2..u31 have 29 exact duplicates at distance 0: y = +1. The mean 29/32 and the
    # centred values -29/32, -61/32, 3/32 are dyadic, so the Gram-based distances are exact and
    # the tie is exact. (torch's CPU sort is not stable from about 17 elements, hence n = 32.)
    u = t([[0.0], [-1.0]] + [[1.0]] * 30)
    assert agg.nnm(u, f=30).flatten().tolist() == [-0.5, -0.5] + [1.0] * 30


def test_nnm_a_nonfinite_neighbour_counts_as_zero():
    # rows 1, 2 and a NaN row, f = 0: n - f = 3, so every row mixes all three rows, the NaN row
    # as 0 (it is zeroed before the product): the finite rows give (1 + 2 + 0) / 3 = 1. The NaN
    # row's own output is the mean of the 3 nearest to the finite rows' mean: the same three rows.
    assert agg.nnm(t([[1.0], [2.0], [math.nan]]), f=0).flatten().tolist() == [1.0, 1.0, 1.0]


def test_multikrum_m_must_be_a_true_integer():
    u = t([[0.0]] * 5)
    for bad in (True, 2.0):
        message = f"multikrum needs 1 <= m <= n, got m={bad!r}, n=5"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            agg.multikrum_select(u, f=0, m=bad)


def test_multikrum_breaks_score_ties_by_the_lower_index_beyond_small_n():
    # 20 identical rows, f = 0: every Krum score is 0 (all distances 0), so the m = 5 rows with
    # the lowest scores are, lower index first, rows 0..4
    assert agg.multikrum_select(t([[1.0, 2.0]] * 20), f=0, m=5).tolist() == [0, 1, 2, 3, 4]


def test_coordinate_rules_read_nan_as_plus_infinity():
    # per coordinate, NaN is sorted (and averaged) as +inf: median(1, NaN, NaN) = median(1, inf,
    # inf) = inf, and the trimmed mean with f = 0 of (1, NaN) is (1 + inf) / 2 = inf
    u = t([[1.0], [math.nan], [math.nan]])
    assert agg.median(u).tolist() == [math.inf]
    assert agg.trimmed_mean(t([[1.0], [math.nan]]), f=0).tolist() == [math.inf]


def test_combine_leaves_out_nonfinite_rows_and_zero_coefficients():
    from fedbench.aggregator._common import combine

    # 1 * 2 + 0.5 * 4 = 4; the NaN row contributes nothing whatever its coefficient (0.25)
    assert combine(t([1.0, 0.5, 0.25]), t([[2.0], [4.0], [math.nan]])).tolist() == [4.0]
    # one row kept: 2 * 5 = 10
    assert combine(t([2.0, 3.0]), t([[5.0], [math.inf]])).tolist() == [10.0]
    # no row kept (the finite row has coefficient 0): zeros of length d = 2
    assert combine(t([0.0, 1.0]), t([[2.0, 3.0], [math.nan, 0.0]])).tolist() == [0.0, 0.0]


def test_a_stack_that_is_not_a_tensor_is_named_by_its_type():
    message = "mean needs a floating (n, d) tensor of updates, got list"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        agg.mean([[1.0, 2.0]])


def test_column_chunks_hold_chunk_elements_over_n_columns(monkeypatch):
    from fedbench.aggregator import _common

    monkeypatch.setattr(_common, "CHUNK_ELEMENTS", 4)
    # n = 8 rows: 4 // 8 = 0 columns, at least 1: one column per chunk
    assert list(_common.column_chunks(8, 3)) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    # n = 1 row: 4 // 1 = 4 columns per chunk, the last chunk the 2 left
    assert list(_common.column_chunks(1, 6)) == [slice(0, 4), slice(4, 6)]


def test_finite_rows_checks_each_suspect_row_on_its_own():
    from fedbench.aggregator._common import finite_rows

    # float32 rows: [3e38, 3e38] is finite but its sum overflows (a suspect), [nan, 0] is not
    # finite: each suspect is checked entry by entry on its own, so the first stays finite
    u = t([[3e38, 3e38], [math.nan, 0.0], [1.0, 2.0]], torch.float32)
    assert finite_rows(u).tolist() == [True, False, True]


def test_the_deployed_rule_of_the_mean_weighs_rows_equally():
    from fedbench.aggregator.options import Mean
    from fedbench.aggregator.stage import AggregatorStage

    # what an adaptive attacker searches against: equal weights 1/4, (1 + 2 + 3 + 6) / 4 = 3
    stage = AggregatorStage(Mean(), f=0, seed=0, dim=1, device=torch.device("cpu"))
    assert stage.rule(0)(t([[1.0], [2.0], [3.0], [6.0]])).tolist() == [3.0]


def test_detection_with_no_byzantine_client_has_no_recall():
    from fedbench.aggregator.stage import detection

    # one client flagged, nobody Byzantine: precision 0 / 1 = 0, recall 0 / 0 is NaN (not an error)
    out = detection(torch.tensor([True, False]), torch.tensor([False, False]))
    assert out["detect_precision"] == 0.0 and math.isnan(out["detect_recall"]) and out["flagged"] == 1


def test_the_deployed_rule_of_fltrust_uses_the_root_update():
    from fedbench.aggregator.options import FLTrust
    from fedbench.aggregator.stage import AggregatorStage

    # root [1, 0]; u1 = [2, 0] has cosine 1 (trust 1), u2 = [0, 3] cosine 0 (trust 0): the
    # aggregate is u1 rescaled to |root| = 1, (1 * (1 / 2) [2, 0]) / 1 = [1, 0]
    stage = AggregatorStage(FLTrust(), f=0, seed=0, dim=2, device=torch.device("cpu"))
    assert stage.rule(0, root=t([1.0, 0.0]))(t([[2.0, 0.0], [0.0, 3.0]])).tolist() == [1.0, 0.0]


def test_the_stage_draws_bucketing_from_the_aggregator_stream_keyed_by_round_and_zero():
    from fedbench.aggregator.options import Mean, Median
    from fedbench.aggregator.stage import AggregatorStage
    from fedbench.rng import torch_generator

    # the documented procedure, replayed: the permutation pi from the "aggregator" stream keyed
    # by (round, 0), buckets {pi(2j), pi(2j + 1)}, then the median of the 3 bucket means
    rows = [0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0]  # every pairing gives different means
    stage = AggregatorStage(Median(pre=["bucketing"], bucket_size=2), f=0, seed=7, dim=1, device=torch.device("cpu"))
    for round_ in (1, 2, 3):
        pi = torch.randperm(6, generator=torch_generator(7, "aggregator", round_, 0)).tolist()
        means = sorted((rows[pi[2 * j]] + rows[pi[2 * j + 1]]) / 2 for j in range(3))
        out = stage(t([[r] for r in rows]), torch.ones(6, dtype=torch.float64), round_)
        assert out.value.tolist() == [means[1]] and out.flagged is None  # rows mixed: no flags
    # after bucketing the buckets weigh equally, whatever the sample weights: rows 1, 2, 3, 6 in two
    # buckets of 2, (m1 + m2) / 2 = (1 + 2 + 3 + 6) / 4 = 3 for any pairing
    stage = AggregatorStage(Mean(pre=["bucketing"], bucket_size=2), f=0, seed=7, dim=1, device=torch.device("cpu"))
    assert stage(t([[1.0], [2.0], [3.0], [6.0]]), t([1.0, 1.0, 1.0, 97.0]), 1).value.tolist() == [3.0]


def test_the_stage_keys_bucketing_and_the_rules_randomness_apart(monkeypatch):
    import fedbench.aggregator.stage as stage_module
    from fedbench.aggregator.options import DnC

    # round 5 of seed 7: bucketing draws from the "aggregator" stream keyed (5, 0), the rule (DnC's
    # coordinate subsets) from (5, 1), so the two never share a stream
    calls = []
    real = stage_module.torch_generator

    def recording(seed, stream, *keys, device="cpu"):
        calls.append((seed, stream, *keys))
        return real(seed, stream, *keys, device=device)

    monkeypatch.setattr(stage_module, "torch_generator", recording)
    stage = stage_module.AggregatorStage(
        DnC(pre=["bucketing"], sub_dim=1), f=0, seed=7, dim=2, device=torch.device("cpu")
    )
    stage(t([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]), torch.ones(4, dtype=torch.float64), 5)
    assert calls == [(7, "aggregator", 5, 0), (7, "aggregator", 5, 1)]


def test_the_stage_applies_each_pre_aggregation_step():
    from fedbench.aggregator.options import Mean, Median
    from fedbench.aggregator.stage import AggregatorStage

    def run(cfg, rows, f):
        stage = AggregatorStage(cfg, f=f, seed=0, dim=1, device=torch.device("cpu"))
        return stage(t([[r] for r in rows]), torch.ones(len(rows), dtype=torch.float64), 0).value.tolist()

    # nnm, f = 1, rows 0, 1, 10: each row with its nearest other row (n - f = 2): 0.5, 0.5,
    # (10 + 1) / 2 = 5.5; median 0.5 (the plain median would be 1)
    assert run(Median(pre=["nnm"]), [0.0, 1.0, 10.0], 1) == [0.5]
    # clip at tau = 2, rows 0, 3, 10: 0, 2, 2; median 2 (plain: 3)
    assert run(Median(pre=["clip"], clip_tau=2.0), [0.0, 3.0, 10.0], 0) == [2.0]
    # arc, f = 1, n = 4: k = floor(2 * 1 * 3 / 4) = 1 row clipped to the largest other norm:
    # rows 0, 1, 2, 9 -> 0, 1, 2, 2; mean 5 / 4 = 1.25 (plain: 3)
    assert run(Mean(pre=["arc"]), [0.0, 1.0, 2.0, 9.0], 1) == [1.25]
