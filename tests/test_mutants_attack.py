"""Tests written to kill surviving mutants of `fedbench.attack` (see docs/testing.md).

Every expected value is derived by hand in the comments from the attack's formula (its docstring and
paper) or is the exact text of an error message; none compares the library with itself.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
from test_attacks import H  # mean (3, 5), sample std (2, 3)

from fedbench.attack import (
    alie_adaptive,
    alie_adaptive_scale,
    alie_z,
    gaussian,
    ipm_adaptive,
    ipm_adaptive_scale,
    large,
    mimic,
    minmax,
    minmax_gamma,
    minsum,
    minsum_gamma,
    nonfinite,
    sign_flip,
)
from fedbench.attack.adaptive import line_maximize
from fedbench.attack.options import AttackContext, Backdoor, Gaussian, IpmAdaptive, LabelFlip, NoAttack, SignFlip
from fedbench.attack.poison import add_trigger, backdoor_view, flip_labels, label_flip_view, trigger_value
from fedbench.attack.stage import AttackStage
from fedbench.round import RoundRecord


def message(fn, *args, error=ValueError, **kwargs) -> str:
    with pytest.raises(error) as err:
        fn(*args, **kwargs)
    return str(err.value)


# ---------------------------------------------------------------- _common.check


def test_input_check_messages_are_exact():
    assert message(sign_flip, H.numpy(), f=1, error=TypeError) == "honest must be a torch.Tensor, got ndarray"
    assert message(sign_flip, torch.zeros(3), f=1) == "honest must be 2-D (n_h, d) with n_h >= 1, got shape (3,)"
    assert message(sign_flip, torch.zeros(0, 4), f=1) == "honest must be 2-D (n_h, d) with n_h >= 1, got shape (0, 4)"
    assert message(sign_flip, torch.ones(3, 2, dtype=torch.int64), f=1) == (
        "honest must have a floating dtype, got torch.int64"
    )
    assert message(sign_flip, H, f=0) == "f must be an int >= 1, got 0"
    assert message(sign_flip, H, f=True) == "f must be an int >= 1, got True"


# ---------------------------------------------------------------- simple.py


def test_simple_attack_messages_are_exact():
    assert message(gaussian, H, f=1, std=-1.0) == "std must be >= 0, got -1.0"
    assert message(large, H.half(), f=1) == (
        "scale=1000000.0 is not a finite torch.float16; use nonfinite() for inf rows"
    )
    assert message(nonfinite, H, f=1, value="NaN") == "value must be one of ['-inf', 'inf', 'nan'], got 'NaN'"


def test_large_accepts_exactly_the_largest_finite_value_of_the_dtype():
    # float16's largest finite value is (2 - 2^-10) * 2^15 = 65504: it fits, so it is not an error
    assert large(H.half(), f=1, scale=65504.0).tolist() == [[65504.0, 65504.0]]
    assert large(H.half(), f=1, scale=-65504.0).tolist() == [[-65504.0, -65504.0]]


def test_gaussian_is_mean_plus_std_times_the_generators_standard_normal_draw():
    # N(mean, std^2) = mean + std * z with z the generator's N(0, 1) draw in the dtype of honest;
    # defaults mean 0, std 1 give z itself
    def z(seed, shape=(3, 2), dtype=torch.float64):
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)

    gen = torch.Generator().manual_seed(5)
    assert torch.equal(gaussian(H, f=3, generator=gen), z(5))
    gen = torch.Generator().manual_seed(5)
    assert torch.equal(gaussian(H, f=3, mean=1.5, std=0.5, generator=gen), 1.5 + 0.5 * z(5))
    gen = torch.Generator().manual_seed(6)  # float16 honest: drawn in float32, then rounded
    assert torch.equal(gaussian(H.half(), f=3, generator=gen), z(6, dtype=torch.float32).half())


# ---------------------------------------------------------------- statistical.py


def test_alie_z_messages_are_exact():
    assert message(alie_z, 7.0, 1) == "n must be an int, got 7.0"
    assert message(alie_z, 7, True) == "f must be an int, got True"
    assert message(alie_z, 5, 5) == "alie_z needs 1 <= f < n, got n=5, f=5"
    assert message(alie_z, 7, 0) == "alie_z needs 1 <= f < n, got n=7, f=0"
    # n = 2, f = 1: s = floor(2) - 1 = 1, p = (2 - 1 - 1) / 1 = 0
    assert message(alie_z, 2, 1) == (
        "alie_z needs 0 < (n - f - s)/(n - f) < 1 (n >= 3, f <= n/2), got 0.0 for n=2, f=1"
    )


def test_mimic_rejects_a_bool_target_with_the_exact_message():
    assert message(mimic, H, f=1, target=True) == "target must be an int in [0, 3), got True"
    assert message(mimic, H, f=1, target=3) == "target must be an int in [0, 3), got 3"


# ---------------------------------------------------------------- optimized.py (Min-Max, Min-Sum)


def test_minmax_minsum_option_messages_are_exact():
    assert message(minmax, H, f=1, perturbation="gauss") == (
        "perturbation must be one of ('unit', 'std', 'sign'), got 'gauss'"
    )
    assert message(minmax, H, f=1, gamma_init=math.inf) == "gamma_init must be finite and > 0, got inf"
    assert message(minsum, H, f=1, gamma_init=0.0) == "gamma_init must be finite and > 0, got 0.0"
    assert message(minmax, H, f=1, tol=-1.0) == "tol must be >= 0, got -1.0"
    assert message(minmax, H, f=1, max_iter=0) == "max_iter must be an int >= 1, got 0"
    assert message(minmax, H, f=1, max_iter=True) == "max_iter must be an int >= 1, got True"
    assert message(minsum, H, f=1, threshold="mean") == "threshold must be 'max' or 'min', got 'mean'"


# u = (0, 0), (2, 0): m = (1, 0), unit p = (1, 0), diameter^2 = 4. Min-Max: max((1 - g)^2, (1 + g)^2) <= 4
# <=> g <= 1; Min-Sum: (1 - g)^2 + (1 + g)^2 = 2 + 2 g^2 <= max_i sum_j |u_i - u_j|^2 = 4 <=> g <= 1. Both
# constraints hold with equality at g = 1 (exact in floating point: a_i = 1, b_i = +-1, c = 1).
TWO = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)


def test_the_search_stops_after_max_iter_100_candidates_by_default():
    # gamma_init = 2^100: candidates 2^100, 2^99, ..., 2^1 (100 of them) all fail; the 101st, 2^0 = 1,
    # is the boundary and feasible. With the default max_iter = 100 no candidate succeeded: gamma = 0.
    g0 = 2.0**100
    assert minmax_gamma(TWO, gamma_init=g0) == 0.0
    assert minsum_gamma(TWO, gamma_init=g0) == 0.0
    assert minmax_gamma(TWO, gamma_init=g0, max_iter=101) == 1.0
    assert minsum_gamma(TWO, gamma_init=g0, max_iter=101) == 1.0
    # the rows m - gamma p: (1, 0) with gamma = 0, (0, 0) with gamma = 1
    assert minmax(TWO, f=1, gamma_init=g0).tolist() == [[1.0, 0.0]]
    assert minsum(TWO, f=1, gamma_init=g0).tolist() == [[1.0, 0.0]]
    assert minmax(TWO, f=1, gamma_init=g0, max_iter=101).tolist() == [[0.0, 0.0]]
    assert minsum(TWO, f=1, gamma_init=g0, max_iter=101).tolist() == [[0.0, 0.0]]


def test_the_constraint_allows_equality_and_the_search_stops_at_distance_tol():
    # all-zero updates: m = 0, p = 0 for every perturbation, diameter 0, and every distance is 0 <= 0, so
    # every gamma is feasible (the paper's constraint is "<="). gamma_init = 1, tol = 0.5: 1 succeeds, the
    # next candidate is 1 + 1/2 = 1.5, and |1.5 - 1| = 0.5 <= tol stops the search: gamma = 1.
    zeros = torch.zeros(3, 2, dtype=torch.float64)
    for perturbation in ("unit", "std", "sign"):
        assert minmax_gamma(zeros, perturbation=perturbation, gamma_init=1.0, tol=0.5) == 1.0
        assert minsum_gamma(zeros, perturbation=perturbation, gamma_init=1.0, tol=0.5) == 1.0
    # the two-point case with gamma_init = 1: the first candidate is the boundary itself, feasible with
    # equality; tol = 0.5 stops at once (next 1.5, |1.5 - 1| = 0.5)
    assert minmax_gamma(TWO, gamma_init=1.0, tol=0.5) == 1.0
    assert minsum_gamma(TWO, gamma_init=1.0, tol=0.5) == 1.0
    assert minsum_gamma(TWO, gamma_init=1.0, tol=0.5, threshold="min") == 1.0  # both rows score 4


def test_tol_zero_is_allowed_and_runs_max_iter_candidates():
    # every gamma feasible (all-zero updates): candidates 1, 1.5, 1.75 all succeed; after max_iter = 3 the
    # last success is 1.75 (tol = 0 never stops the search early)
    zeros = torch.zeros(2, 3, dtype=torch.float64)
    assert minmax_gamma(zeros, gamma_init=1.0, tol=0.0, max_iter=3) == 1.75
    assert minsum_gamma(zeros, gamma_init=1.0, tol=0.0, max_iter=3) == 1.75


def test_distances_are_exact_differences_beyond_25_rows():
    # 13 rows (1e6, 0) and 13 rows (1e6 + 2, 0) in float32 (all exact): the same geometry as TWO, shifted,
    # so gamma -> 1. torch.cdist's default switches to the Gram trick |x|^2 + |y|^2 - 2 x.y above 25 rows,
    # which in float32 at 1e6 (|x|^2 = 1e12, ulp 2^17) gives a diameter of 0: nothing would be feasible.
    u = torch.tensor([[1e6, 0.0]] * 13 + [[1e6 + 2, 0.0]] * 13)
    for fn in (minmax_gamma, minsum_gamma):
        gamma = fn(u)
        assert 1 - 2e-5 <= gamma <= 1, fn


# ---------------------------------------------------------------- adaptive.py


def test_line_search_option_messages_are_exact():
    def obj(x):
        return x

    kw = {"evals": 5, "start": 0.0, "delta": 1.0, "ratio": 0.8}
    assert message(line_maximize, obj, **{**kw, "evals": True}) == "evals must be an int >= 1, got True"
    assert message(line_maximize, obj, **{**kw, "evals": 0}) == "evals must be an int >= 1, got 0"
    assert message(line_maximize, obj, **{**kw, "start": math.nan}) == "start must be finite, got nan"
    assert message(line_maximize, obj, **{**kw, "delta": 0.0}) == "delta must be finite and non-zero, got 0.0"
    assert message(line_maximize, obj, **{**kw, "delta": math.inf}) == "delta must be finite and non-zero, got inf"
    assert message(line_maximize, obj, **{**kw, "ratio": 1.0}) == "ratio must be in (0.5, 1), got 1.0"
    assert message(line_maximize, obj, **{**kw, "ratio": 0.5}) == "ratio must be in (0.5, 1), got 0.5"
    assert message(ipm_adaptive, H, f=1, aggregator=lambda u: u) == (
        "aggregator must map (n, d) to (d,), got shape (4, 2)"
    )


# honest 1, 2, 3 (d = 1): mean 2, sample std 1. The rule keeps the Byzantine (last) row if |row| <= 10,
# else returns the honest mean, so J(s) = |row(s) - 2| while the row stays within 10, and 0 beyond.
H3 = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)


def _keep_small_last_row(u):
    return u[-1] if abs(float(u[-1, 0])) <= 10 else u[:-1].mean(0)


def test_adaptive_ipm_passes_its_search_options_on():
    # IPM row -2 e: J(e) = 2 + 2 e for e <= 5, else 0. start -0.5, delta 1, ratio 0.6, evals 6 probes
    # -0.5 (J 1), 0.5 (J 3, better: delta 2), 2.5 (J 7, delta 4), 6.5 (J 0: delta 4 * 0.6 = 2.4, stop
    # expanding), then 2.5 + 2.4 = 4.9 (J 11.8, better): 6 evaluations, epsilon = 4.9, row -9.8.
    kw = {"evals": 6, "start": -0.5, "delta": 1.0, "ratio": 0.6}
    assert ipm_adaptive_scale(H3, f=1, aggregator=_keep_small_last_row, **kw) == pytest.approx(4.9, abs=1e-12)
    out = ipm_adaptive(H3, f=1, aggregator=_keep_small_last_row, **kw)
    assert out.shape == (1, 1) and float(out[0, 0]) == pytest.approx(-9.8, abs=1e-12)


def test_adaptive_alie_passes_its_search_options_on():
    # ALIE row 2 - z: J(z) = |z| for z <= 12, else 0. start 0.5, delta 1, ratio 0.6, evals 7 probes
    # 0.5, 1.5 (better, delta 2), 3.5 (delta 4), 7.5 (delta 8), 15.5 (J 0: delta 4.8), then 7.5 + 4.8 = 12.3
    # (J 0: delta 2.88), 7.5 + 2.88 = 10.38 (J 10.38, better): z = 10.38, row 2 - 10.38 = -8.38.
    kw = {"evals": 7, "start": 0.5, "delta": 1.0, "ratio": 0.6}
    assert alie_adaptive_scale(H3, f=1, aggregator=_keep_small_last_row, **kw) == pytest.approx(10.38, abs=1e-12)
    out = alie_adaptive(H3, f=1, aggregator=_keep_small_last_row, **kw)
    assert out.shape == (1, 1) and float(out[0, 0]) == pytest.approx(-8.38, abs=1e-12)


# ---------------------------------------------------------------- poison.py


def test_flip_labels_hand_computed():
    y = torch.tensor([0, 1, 2, 3, 9])
    assert flip_labels(y, 10).tolist() == [9, 8, 7, 6, 0]  # C - 1 - y
    assert flip_labels(y, 4).tolist()[:4] == [3, 2, 1, 0]
    assert flip_labels(y, 10, target=0).tolist() == [0] * 5  # target 0 is a target, not "none"
    assert flip_labels(y, 10, target=7).tolist() == [7] * 5
    assert flip_labels(y, 10, target=7).dtype == y.dtype


def test_add_trigger_sets_the_bottom_right_square_of_every_channel():
    x = torch.zeros(2, 3, 5, 6)  # H = 5, W = 6: neither is 2 * size, so the square is not "from index size on"
    out = add_trigger(x, 2, 7.0)
    expect = torch.zeros(2, 3, 5, 6)
    expect[:, :, 3:5, 4:6] = 7.0  # rows H-2..H-1, columns W-2..W-1
    assert torch.equal(out, expect)
    assert torch.equal(x, torch.zeros(2, 3, 5, 6))  # a copy
    f = torch.zeros(2, 5)
    assert add_trigger(f, 2, 1.5).tolist() == [[0.0, 0.0, 0.0, 1.5, 1.5]] * 2  # the last 2 features
    assert torch.equal(f, torch.zeros(2, 5))
    assert message(add_trigger, torch.zeros(2, 3, 4), 1, 1.0) == (
        "a trigger needs images (N, C, H, W) or features (N, F), got shape (2, 3, 4)"
    )


def test_trigger_value_is_white_for_uint8_else_the_largest_value():
    assert trigger_value(torch.tensor([[3, 7]], dtype=torch.uint8)) == 255.0
    assert trigger_value(torch.tensor([[0.25, -4.0, 0.75]])) == 0.75


def test_label_flip_view_flips_only_the_byzantine_clients_rows():
    x = torch.arange(5.0).view(5, 1)
    y = torch.tensor([0, 1, 2, 0, 1])
    parts = [np.array([0, 1]), np.array([2, 3]), np.array([], dtype=np.int64), np.array([4])]
    view = label_flip_view(x, y, parts, np.array([1, 2]), 3, None)
    # client 1 holds rows 2, 3: labels 2, 0 -> 3 - 1 - y = 0, 2; client 2 holds nothing
    assert view.y.tolist() == [0, 1, 0, 2, 1] and view.poisoned == 2
    assert view.x is x and view.parts is parts and y.tolist() == [0, 1, 2, 0, 1]
    view = label_flip_view(x, y, parts, np.array([2]), 3, 1)  # only an empty client: nothing poisoned
    assert view.y.tolist() == [0, 1, 2, 0, 1] and view.poisoned == 0
    view = label_flip_view(x, y, parts, np.array([0, 3]), 3, 1)  # target 1 for rows 0, 1, 4
    assert view.y.tolist() == [1, 1, 2, 0, 1] and view.poisoned == 3


def test_backdoor_view_with_fraction_one_appends_every_sample_in_client_order():
    # 5 samples of 2 features (values 0..9, largest 9); Byzantine clients 3, 2, 1 (given unsorted) are
    # processed in sorted order: client 1 holds nothing and is skipped, client 2's rows 2, 3 become new
    # rows 5, 6, client 3's row 4 becomes 7. Labels int32: the appended labels keep that dtype.
    x = torch.arange(10.0).view(5, 2)
    y = torch.tensor([1, 1, 1, 1, 1], dtype=torch.int32)
    parts = [np.array([0, 1]), np.array([], dtype=np.int64), np.array([2, 3]), np.array([4])]
    view = backdoor_view(x, y, parts, np.array([3, 2, 1]), 0, 1, 1.0, np.random.default_rng(0))
    assert view.poisoned == 3
    assert [p.tolist() for p in view.parts] == [[0, 1], [], [5, 6], [7]]
    assert [p.tolist() for p in parts] == [[0, 1], [], [2, 3], [4]]  # the caller's partition is untouched
    # copies of rows 2, 3, 4 ((4, 5), (6, 7), (8, 9)) with the last feature set to 9, labelled 0
    assert view.x.tolist() == x.tolist() + [[4.0, 9.0], [6.0, 9.0], [8.0, 9.0]]
    assert view.y.tolist() == [1, 1, 1, 1, 1, 0, 0, 0] and view.y.dtype == torch.int32


def test_backdoor_view_poisons_round_fraction_times_n_and_at_least_one():
    # k = max(1, round(fraction * n)): n = 3, 0.5 -> round(1.5) = 2; n = 1, 0.5 -> max(1, round(0.5) = 0) = 1;
    # n = 4, 0.4 -> round(1.6) = 2
    x = torch.zeros(8, 3, dtype=torch.float64)
    y = torch.zeros(8, dtype=torch.int64)
    parts = [np.array([0, 1, 2]), np.array([3]), np.array([4, 5, 6, 7])]
    view = backdoor_view(x, y, parts, np.array([0, 1]), 2, 1, 0.5, np.random.default_rng(1))
    assert view.poisoned == 3 and len(view.x) == 11 and view.x.dtype == torch.float64
    assert (view.parts[0] >= 8).sum() == 2 and view.parts[1].tolist() == [10]
    assert view.y[8:].tolist() == [2, 2, 2]
    view = backdoor_view(x, y, parts, np.array([2]), 2, 1, 0.4, np.random.default_rng(1))
    assert view.poisoned == 2 and sorted(view.parts[2][view.parts[2] >= 8].tolist()) == [8, 9]


def test_backdoor_view_with_only_empty_byzantine_clients_changes_nothing():
    x, y = torch.ones(2, 2), torch.tensor([0, 1])
    parts = [np.array([0, 1]), np.array([], dtype=np.int64)]
    view = backdoor_view(x, y, parts, np.array([1]), 0, 1, 0.5, np.random.default_rng(0))
    assert view.x is x and view.y is y and view.poisoned == 0
    assert [p.tolist() for p in view.parts] == [[0, 1], []]


# ---------------------------------------------------------------- stage.py


def _record(updates, byzantine):
    n = len(updates)
    return RoundRecord(
        round=2, clients=np.arange(n), num_samples=np.ones(n, np.int64), updates=updates, byzantine=np.array(byzantine)
    )


U4 = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])


def _no_rule(u):
    raise AssertionError("not an adaptive attack: the rule is not called")


def test_byzantine_identities_are_a_sorted_draw_without_replacement_from_their_stream():
    # the "byzantine" stream is default_rng(SeedSequence([seed, crc32("byzantine")])) (fedbench.rng)
    for seed, n, count in ((4, 10, 3), (0, 6, 6), (11, 50, 7)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(b"byzantine")]))
        expect = sorted(rng.choice(n, count, replace=False).tolist())
        stage = AttackStage(SignFlip(num_byzantine=count), n, seed)
        assert stage.byzantine.tolist() == expect and stage.byzantine.dtype == np.int64
        assert stage.active and stage.kind == "model"
    stage = AttackStage(SignFlip(num_byzantine=3), 10, 4)
    byz = set(stage.byzantine.tolist())
    assert stage.mask(np.arange(10)).tolist() == [c in byz for c in range(10)]
    none = AttackStage(NoAttack(), 10, 4)
    assert not none.active and none.kind == "none" and len(none.byzantine) == 0


def test_omniscient_sign_flip_uses_the_honest_rows():
    rec = _record(U4.clone(), [False, True, False, True])
    metrics = AttackStage(SignFlip(num_byzantine=2), 4, 0)(rec, _no_rule)
    assert metrics == {"byzantine_selected": 2}
    # honest rows 0, 2: mean (3, 4) -> -(3, 4) in rows 1 and 3
    assert rec.updates.tolist() == [[1.0, 2.0], [-3.0, -4.0], [5.0, 6.0], [-3.0, -4.0]]
    assert rec.updates.dtype == torch.float32


def test_a_non_omniscient_attacker_or_one_without_honest_rows_uses_its_own_rows():
    rec = _record(U4.clone(), [False, True, False, True])
    AttackStage(SignFlip(num_byzantine=2, omniscient=False), 4, 0)(rec, _no_rule)
    # own rows 1, 3: mean (5, 6)
    assert rec.updates.tolist() == [[1.0, 2.0], [-5.0, -6.0], [5.0, 6.0], [-5.0, -6.0]]
    rec = _record(U4.clone(), [True, True, True, True])  # every selected client Byzantine: no honest row
    assert AttackStage(SignFlip(num_byzantine=4), 4, 0)(rec, _no_rule) == {"byzantine_selected": 4}
    assert rec.updates.tolist() == [[-4.0, -5.0]] * 4  # mean of the 4 own rows (4, 5)


def test_a_round_without_selected_byzantine_clients_changes_nothing():
    rec = _record(U4.clone(), [False] * 4)
    assert AttackStage(SignFlip(num_byzantine=2), 4, 0)(rec, _no_rule) == {"byzantine_selected": 0}
    assert torch.equal(rec.updates, U4)
    rec = _record(U4.clone(), [False, False, True, False])  # one attacker: sign_flip of rows 0, 1, 3
    assert AttackStage(SignFlip(num_byzantine=1), 4, 0)(rec, _no_rule) == {"byzantine_selected": 1}
    # honest rows 0, 1, 3: mean (11/3, 14/3)
    assert torch.allclose(rec.updates[2], torch.tensor([-11.0 / 3, -14.0 / 3]), rtol=1e-6, atol=0)
    assert torch.equal(rec.updates[[0, 1, 3]], U4[[0, 1, 3]])


def test_backdoor_boost_scales_only_the_byzantine_rows_and_sends_no_model_attack():
    rec = _record(U4.clone(), [True, False, False, True])
    assert AttackStage(Backdoor(num_byzantine=2, boost=3.0), 4, 0)(rec, _no_rule) == {"byzantine_selected": 2}
    assert rec.updates.tolist() == [[3.0, 6.0], [3.0, 4.0], [5.0, 6.0], [21.0, 24.0]]
    rec = _record(U4.clone(), [True, False, False, True])
    AttackStage(Backdoor(num_byzantine=2), 4, 0)(rec, _no_rule)  # boost 1: the update as trained
    assert torch.equal(rec.updates, U4)
    rec = _record(U4.clone(), [True, False, False, True])
    AttackStage(LabelFlip(num_byzantine=2), 4, 0)(rec, _no_rule)  # data poisoning only
    assert torch.equal(rec.updates, U4)


def test_adaptive_attacks_search_against_the_rule_they_are_given():
    seen = []

    def mean_rule(u):
        seen.append(tuple(u.shape))
        return u.mean(0)

    rec = _record(U4.clone().double(), [False, True, False, True])
    AttackStage(IpmAdaptive(num_byzantine=2), 4, 0)(rec, mean_rule)
    # against the mean every expansion step improves: epsilon = 10 * (2^19 - 1) (adaptive.py's docstring),
    # 20 calls of the rule on the 2 honest rows and 2 Byzantine rows; the row is -epsilon * (3, 4)
    eps = 10.0 * (2**19 - 1)
    assert seen == [(4, 2)] * 20
    assert rec.updates[1].tolist() == [-eps * 3, -eps * 4] and rec.updates[3].tolist() == [-eps * 3, -eps * 4]


def test_the_training_view_follows_the_kind_of_attack():
    x = torch.arange(8.0).view(4, 2)
    y = torch.tensor([0, 1, 2, 0])
    parts = [np.array([0, 1]), np.array([2, 3])]
    stage = AttackStage(LabelFlip(num_byzantine=1), 2, 3)
    c = int(stage.byzantine[0])
    view = stage.training_view(x, y, parts, 3)
    flipped = [2 - v for v in y.tolist()]
    assert view.y.tolist() == [flipped[i] if i in parts[c] else y.tolist()[i] for i in range(4)] and view.poisoned == 2
    view = AttackStage(LabelFlip(num_byzantine=1, target=1), 2, 3).training_view(x, y, parts, 3)
    assert view.y.tolist() == [1 if i in parts[c] else y.tolist()[i] for i in range(4)]
    bd = AttackStage(Backdoor(num_byzantine=1, target=2, trigger_size=1, poison_fraction=1.0), 2, 3)
    view = bd.training_view(x, y, parts, 3)
    # both samples of the Byzantine client copied, last feature set to the largest value 7, labelled 2
    assert view.poisoned == 2 and view.y[4:].tolist() == [2, 2]
    assert view.x[4:].tolist() == [[x[i, 0].item(), 7.0] for i in parts[c]]
    assert view.parts[c].tolist() == [4, 5]
    view = AttackStage(SignFlip(num_byzantine=1), 2, 3).training_view(x, y, parts, 3)
    assert view.x is x and view.y is y and view.parts is parts and view.poisoned == 0


def test_adaptive_rows_with_the_default_search_against_the_mean():
    # against the mean J grows with the scale, so every one of the evals - 1 = 19 expansion steps improves:
    # scale = start + delta * (2^19 - 1) = 10 * 524287 = 5242870 with the defaults (adaptive.py's docstring).
    # H3: mean 2, std 1 -> ALIE row 2 - 5242870, IPM row -2 * 5242870.
    def mean_rule(u):
        return u.mean(0)

    scale = 10.0 * (2**19 - 1)
    assert alie_adaptive(H3, f=2, aggregator=mean_rule).tolist() == [[2.0 - scale]] * 2
    assert ipm_adaptive(H3, f=2, aggregator=mean_rule).tolist() == [[-2.0 * scale]] * 2
    assert alie_adaptive_scale(H3, f=2, aggregator=mean_rule) == scale
    assert ipm_adaptive_scale(H3, f=2, aggregator=mean_rule) == scale


# ---------------------------------------------------------------- options.py


def test_gaussian_noise_is_keyed_by_the_seed_and_the_round():
    # the "attack" stream of round r: SeedSequence([seed, crc32("attack"), r]), first 64-bit word >> 1 (fedbench.rng)
    def expected_seed(seed, r):
        words = np.random.SeedSequence([seed, zlib.crc32(b"attack"), r]).generate_state(2, np.uint64)
        return int(words[0] >> 1)

    for r in (0, 3):
        ctx = AttackContext(r, 4, H, 7, None)
        args = Gaussian(mean=0.5, std=2.0).arguments(ctx)
        assert set(args) == {"mean", "std", "generator"} and (args["mean"], args["std"]) == (0.5, 2.0)
        draw = torch.randn(5, generator=args["generator"])
        assert torch.equal(draw, torch.randn(5, generator=torch.Generator().manual_seed(expected_seed(7, r))))


# ---------------------------------------------------------------- adaptive._maximize: J in the honest dtype


def test_the_damage_is_measured_in_the_honest_updates_dtype():
    # fp32 honest rows 0 and 2: mean 1, IPM row -e. The rule answers in fp64 with 1 - 1e-12 e, which
    # rounds to 1.0 in fp32 (1e-12 e < 2**-24 for e <= 30): J = 0 at every probe 0, 10, then 0 + 8
    # (evals 3; no strict improvement), so the scale stays at start 0. Measured in fp64 instead, J(10)
    # = 1e-11 > 0 would move the search to 10 and then 30.
    honest = torch.tensor([[0.0], [2.0]])

    def fp64_rule(u):
        return torch.tensor([1.0 + 1e-12 * float(u[-1, 0])], dtype=torch.float64)

    assert ipm_adaptive_scale(honest, f=1, aggregator=fp64_rule, evals=3) == 0.0


def test_backdoor_boost_of_two_doubles_the_byzantine_rows():
    # model replacement with boost 2: rows 0 and 3 become 2 * (1, 2) = (2, 4) and 2 * (7, 8) = (14, 16)
    rec = _record(U4.clone(), [True, False, False, True])
    AttackStage(Backdoor(num_byzantine=2, boost=2.0), 4, 0)(rec, _no_rule)
    assert rec.updates.tolist() == [[2.0, 4.0], [3.0, 4.0], [5.0, 6.0], [14.0, 16.0]]


def test_alie_z_comes_from_the_rounds_client_count_not_the_reference_rows():
    # 5 clients selected, rows 1 and 3 Byzantine and not omniscient: the reference is their own rows
    # (3, 4), (7, 8): mean (5, 6), sample std sqrt(((3-5)^2 + (7-5)^2) / 1) = 2 sqrt(2) in both columns.
    # The paper's z uses the round's n = 5 and f = 2: s = floor(5/2 + 1) - 2 = 1, p = (5 - 2 - 1)/3 = 2/3,
    # z = Phi^-1(2/3) (scipy). With n = 2 reference rows + 2 = 4 instead, p = 1/2 and z = 0.
    from scipy import stats

    from fedbench.attack.options import Alie

    u5 = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]], dtype=torch.float64)
    rec = _record(u5.clone(), [False, True, False, True, False])
    AttackStage(Alie(num_byzantine=2, omniscient=False), 5, 0)(rec, _no_rule)
    shift = stats.norm.ppf(2 / 3) * 2 * math.sqrt(2)
    expected = torch.tensor([[5.0 - shift, 6.0 - shift]] * 2, dtype=torch.float64)
    torch.testing.assert_close(rec.updates[[1, 3]], expected, rtol=0, atol=1e-12)


def test_a_config_without_a_kind_is_no_attack():
    # AttackStage reads the kind with getattr(cfg, "kind", "none"): an object with only count() is "none"
    class Bare:
        def count(self, num_clients):
            return 0

    stage = AttackStage(Bare(), 4, 0)
    assert stage.kind == "none" and not stage.active


def test_threat_model_check_allows_every_client_byzantine_and_names_too_many_exactly():
    from types import SimpleNamespace

    run = SimpleNamespace(num_clients=10)
    assert SignFlip(num_byzantine=10).check(run) is None  # all 10 Byzantine: allowed (<=)
    assert SignFlip(num_byzantine=11).check(run) == (
        "attack.num_byzantine=11: more than num_clients=10; allowed: 0 <= attack.num_byzantine <= num_clients"
    )


def test_attack_fraction_one_is_a_valid_config_and_makes_every_client_byzantine():
    from test_adversarial import PIPE

    from fedbench.config import ConfigError, compose, validate

    run = validate(compose(*PIPE, "attack=sign_flip", "attack.fraction=1.0"))
    assert run.attack.count(run.num_clients) == 10  # floor(1.0 * 10)
    with pytest.raises(ConfigError) as err:
        validate(compose(*PIPE, "attack=sign_flip", "attack.fraction=1.01"))
    assert str(err.value) == "attack.fraction=1.01: out of range; allowed: a number in [0, 1]"
