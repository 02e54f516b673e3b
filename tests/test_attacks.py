"""Byzantine model-poisoning attacks (fedbench.attack): hand-computed cases, the papers' constraints and
searches checked against independent references, and ByzFL's documented outputs reproduced."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import fedbench.attack as attack
from fedbench.attack import (
    alie,
    alie_adaptive,
    alie_adaptive_scale,
    alie_z,
    gaussian,
    ipm,
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

# mean (3, 5); sample std (2, 3): column 0 deviates by (-2, 0, 2) -> 8 / 2 = 4; column 1 by (-3, 3, 0) -> 18 / 2 = 9
H = torch.tensor([[1.0, 2.0], [3.0, 8.0], [5.0, 5.0]], dtype=torch.float64)


def MEAN(u):
    return u.mean(0)


def MEDIAN(u):
    return u.median(0).values  # the lower median


# every attack, called with its required options (a scale that fits float16 for ``large``)
ATTACKS = {
    "sign_flip": lambda h, f: sign_flip(h, f=f),
    "gaussian": lambda h, f: gaussian(h, f=f, generator=torch.Generator().manual_seed(0)),
    "large": lambda h, f: large(h, f=f, scale=100.0),
    "nonfinite": lambda h, f: nonfinite(h, f=f),
    "alie": lambda h, f: alie(h, f=f, z=1.0),
    "alie_default_z": lambda h, f: alie(h, f=f, n=25),
    "ipm": lambda h, f: ipm(h, f=f),
    "mimic": lambda h, f: mimic(h, f=f, target=1),
    "minmax": lambda h, f: minmax(h, f=f),
    "minmax_std": lambda h, f: minmax(h, f=f, perturbation="std"),
    "minsum": lambda h, f: minsum(h, f=f, perturbation="sign"),
    "alie_adaptive": lambda h, f: alie_adaptive(h, f=f, aggregator=MEDIAN),
    "ipm_adaptive": lambda h, f: ipm_adaptive(h, f=f, aggregator=MEDIAN),
}
DEVICES = [
    pytest.param(d, marks=pytest.mark.skipif(d == "cuda" and not torch.cuda.is_available(), reason="needs CUDA"))
    for d in ("cpu", "cuda")
]


def honest(n=12, d=8, seed=0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + offset


# ---------------------------------------------------------------- contract shared by every attack


def test_package_exports_are_the_functions():
    for name in attack.__all__:
        assert callable(getattr(attack, name)), name
    assert attack.alie is alie and attack.minmax is minmax and attack.ipm is ipm  # not shadowed by modules


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("f", [1, 4])
def test_shape_dtype_no_aliasing_and_inputs_untouched(name, f):
    h = honest(5, 3)
    before = h.clone()
    out = ATTACKS[name](h, f)
    assert out.shape == (f, 3) and out.dtype == h.dtype and out.device == h.device
    assert torch.equal(h, before)
    out.fill_(123.0)  # a fresh tensor: writing to it leaves the honest updates alone
    assert torch.equal(h, before)


@pytest.mark.parametrize("name", [n for n in ATTACKS if n != "gaussian"])
def test_colluding_rows_are_identical(name):
    out = ATTACKS[name](honest(6, 4), 3)
    for i in (1, 2):
        torch.testing.assert_close(out[i], out[0], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("bad_f", [0, -1, 1.5, True, None])
def test_f_must_be_a_positive_int(name, bad_f):
    with pytest.raises(ValueError, match="f must be an int >= 1") as err:
        ATTACKS[name](H, bad_f)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize(
    "bad", [torch.zeros(3), torch.zeros(1, 2, 3), torch.zeros(0, 4), torch.ones(3, 2, dtype=torch.int64)]
)
def test_honest_must_be_a_2d_float_tensor_with_a_row(name, bad):
    with pytest.raises(ValueError, match="honest must") as err:
        ATTACKS[name](bad, 1)
    assert "\n" not in str(err.value)


def test_honest_must_be_a_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        sign_flip(H.numpy(), f=1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", [n for n in ATTACKS if n not in ("nonfinite",)])
def test_low_precision_inputs_give_their_dtype_and_the_float64_values(name, dtype):
    h64 = honest(7, 5, seed=3)
    h = h64.to(dtype)
    out = ATTACKS[name](h, 2)
    assert out.dtype == dtype
    expect = ATTACKS[name](h.double(), 2)  # same (rounded) inputs, computed in float64
    tol = {torch.float16: 2e-2, torch.bfloat16: 1e-1, torch.float32: 1e-4}[dtype]
    torch.testing.assert_close(out.double(), expect, rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ATTACKS)
def test_every_device_gives_the_cpu_result(name, device):
    h = honest(9, 6, seed=5)
    out = ATTACKS[name](h.to(device), 2)
    assert out.device.type == device
    torch.testing.assert_close(out.cpu(), ATTACKS[name](h, 2), rtol=1e-9, atol=1e-9, equal_nan=True)


# ---------------------------------------------------------------- simple attacks


def test_sign_flip_hand_computed():
    assert sign_flip(H, f=2).tolist() == [[-3.0, -5.0], [-3.0, -5.0]]
    assert sign_flip(H, f=1, scale=2.5).tolist() == [[-7.5, -12.5]]


def test_nonfinite_values():
    assert torch.isnan(nonfinite(H, f=3)).all()
    assert torch.isposinf(nonfinite(H, f=2, value="inf")).all()
    assert torch.isneginf(nonfinite(H.float(), f=2, value="-inf")).all()
    with pytest.raises(ValueError, match="value must be one of"):
        nonfinite(H, f=1, value="NaN")


def test_large_is_a_constant_vector_that_fits_the_dtype():
    assert large(H, f=2).tolist() == [[1e6, 1e6], [1e6, 1e6]]
    assert large(H.float(), f=1, scale=-5.0).tolist() == [[-5.0, -5.0]]
    assert large(H.half(), f=1, scale=60000.0).tolist() == [[60000.0, 60000.0]]
    with pytest.raises(ValueError, match="not a finite torch.float16"):
        large(H.half(), f=1)  # 1e6 overflows float16
    with pytest.raises(ValueError, match="use nonfinite"):
        large(H, f=1, scale=math.inf)


def test_gaussian_moments_within_five_standard_errors():
    g = torch.Generator().manual_seed(1)
    out = gaussian(torch.zeros(3, 500), f=400, mean=1.5, std=0.5, generator=g)
    n = out.numel()  # 200_000 draws: standard error of the mean 0.5 / sqrt(n) = 0.0011
    assert abs(float(out.mean()) - 1.5) < 5 * 0.5 / math.sqrt(n)
    assert abs(float(out.std()) - 0.5) < 5 * 0.5 / math.sqrt(2 * n)  # se of the std ~ sigma / sqrt(2n)
    assert stats.kstest(((out.flatten()[:20_000] - 1.5) / 0.5).numpy(), "norm").pvalue > 1e-3


def test_gaussian_is_deterministic_per_generator_and_ignores_the_values():
    def draw(seed, h=H):
        return gaussian(h, f=3, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(7), draw(7))
    assert torch.equal(draw(7), draw(7, h=H * 100))  # only the shape, dtype and device of honest matter
    assert not torch.equal(draw(7), draw(8))
    assert not torch.equal(draw(7)[0], draw(7)[1])  # independent rows
    for low in (torch.float16, torch.bfloat16):  # drawn in float32, then rounded: one seed, one noise
        assert torch.equal(draw(7, h=H.to(low)), draw(7, h=H.float()).to(low))
    assert torch.equal(gaussian(H, f=2, std=0.0, mean=4.0), torch.full((2, 2), 4.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="std must be >= 0"):
        gaussian(H, f=1, std=-1.0)


# ---------------------------------------------------------------- ALIE, IPM, Mimic


def test_alie_is_mean_minus_z_sample_std_hand_computed():
    assert alie(H, f=2, z=0.5).tolist() == [[2.0, 3.5], [2.0, 3.5]]  # (3 - 0.5*2, 5 - 0.5*3)
    assert alie(H, f=1, z=-1.0).tolist() == [[5.0, 8.0]]  # ByzFL's mean + tau*std with tau = 1
    assert alie(H, f=1, z=0.0).tolist() == [[3.0, 5.0]]


def test_alie_default_z_uses_n_h_plus_f_unless_n_is_given():
    # n = 3 + 2 = 5, f = 2: s = floor(3.5) - 2 = 1, z = Phi^-1((5 - 2 - 1) / 3) = Phi^-1(2/3)
    z = stats.norm.ppf(2 / 3)
    torch.testing.assert_close(alie(H, f=2), torch.tensor([[3 - 2 * z, 5 - 3 * z]] * 2, dtype=torch.float64))
    z25 = stats.norm.ppf(12 / 20)
    torch.testing.assert_close(alie(H, f=5, n=25), torch.tensor([[3 - 2 * z25, 5 - 3 * z25]] * 5, dtype=torch.float64))
    assert alie(H, f=5, n=25, z=1.0).tolist()[0] == [1.0, 2.0]  # z given: n is not used


def test_alie_with_one_honest_row_sends_that_row_not_nan():
    row = torch.tensor([[0.5, -2.0, 7.0]])
    assert torch.equal(alie(row, f=2, z=1.5), row.repeat(2, 1))


def test_alie_z_paper_values():
    assert alie_z(25, 5) == pytest.approx(0.2533, abs=1e-4)
    # (n, f): s = floor(n/2 + 1) - f and p = (n - f - s) / (n - f), by hand
    cases = {
        (25, 5): 12 / 20,
        (20, 3): 9 / 17,
        (11, 3): 5 / 8,
        (100, 20): 49 / 80,
        (50, 24): 24 / 26,
        (10, 1): 4 / 9,
        (3, 1): 1 / 2,
    }
    for (n, f), p in cases.items():
        assert alie_z(n, f) == pytest.approx(stats.norm.ppf(p), abs=1e-12), (n, f)
    assert alie_z(10, 2) == 0.0  # p = 4/8: z = 0, ALIE sends the mean
    assert alie_z(10, 1) < 0  # p = 4/9: with an even n and few attackers the shift points the other way


@pytest.mark.parametrize("n, f", [(2, 1), (1, 1), (4, 3), (5, 5), (7, 0), (7, 4), (7.0, 1), (True, 1)])
def test_alie_z_rejects_p_outside_0_1(n, f):
    with pytest.raises(ValueError, match="alie_z|must be an int"):
        alie_z(n, f)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda n: st.lists(st.lists(st.floats(-100, 100), min_size=3, max_size=3), min_size=n, max_size=n)
    ),
    st.floats(-3, 3),
)
def test_alie_property_matches_numpy(rows, z):
    u = np.array(rows)
    sd = u.std(axis=0, ddof=1) if len(u) > 1 else np.zeros(3)
    out = alie(torch.tensor(u), f=2, z=z).numpy()
    np.testing.assert_allclose(out, np.tile(u.mean(0) - z * sd, (2, 1)), rtol=1e-12, atol=1e-9)


def test_ipm_hand_computed():
    torch.testing.assert_close(ipm(H, f=2), torch.tensor([[-0.3, -0.5]] * 2, dtype=torch.float64))
    assert ipm(H, f=1, epsilon=2.0).tolist() == [[-6.0, -10.0]]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=6, max_size=6), st.floats(0, 10))
def test_ipm_is_a_scaled_sign_flip(values, eps):
    u = torch.tensor(values, dtype=torch.float64).view(3, 2)
    torch.testing.assert_close(ipm(u, f=2, epsilon=eps), sign_flip(u, f=2, scale=eps))
    torch.testing.assert_close(ipm(u, f=1, epsilon=eps)[0], -eps * u.mean(0))


def test_mimic_copies_the_target_row():
    assert mimic(H, f=2).tolist() == [[1.0, 2.0], [1.0, 2.0]]
    assert mimic(H, f=3, target=2).tolist() == [[5.0, 5.0]] * 3
    for bad in (3, -1, 1.0):
        with pytest.raises(ValueError, match="target must be an int in"):
            mimic(H, f=1, target=bad)


# ---------------------------------------------------------------- Min-Max and Min-Sum


def _direction(u, perturbation):
    m = u.mean(0)
    if perturbation == "unit":
        norm = np.linalg.norm(m)
        return m / norm if norm > 0 else np.zeros_like(m)
    if perturbation == "std":
        return u.std(0, ddof=1) if len(u) > 1 else np.zeros_like(m)
    return np.sign(m)


def _reference_search(u, kind, perturbation, gamma_init=10.0, tol=1e-5, threshold="max"):
    """The authors' loop (our_attack_dist / our_attack_score), on the vectors themselves, in numpy."""
    m, p = u.mean(0), _direction(u, perturbation)
    sq = ((u[:, None, :] - u[None, :, :]) ** 2).sum(-1)
    bound = sq.max() if kind == "minmax" else (sq.sum(1).max() if threshold == "max" else sq.sum(1).min())
    lam, step, succ = gamma_init, gamma_init, 0.0
    while abs(succ - lam) > tol:
        dist = ((u - (m - lam * p)) ** 2).sum(1)
        if (dist.max() if kind == "minmax" else dist.sum()) <= bound:
            succ, lam = lam, lam + step / 2
        else:
            lam = lam - step / 2
        step /= 2
    return succ


def _exact_boundary(u, kind, perturbation, threshold="max"):
    """The largest feasible gamma in closed form: the constraints are quadratics in gamma."""
    m, p = u.mean(0), _direction(u, perturbation)
    c = float(p @ p)
    if c == 0:
        return math.inf
    a = ((m - u) ** 2).sum(1)
    b = (m - u) @ p
    sq = ((u[:, None, :] - u[None, :, :]) ** 2).sum(-1)
    if kind == "minmax":  # a_i - 2 g b_i + g^2 c <= D^2 for every i: the smallest upper root
        return float(np.min((b + np.sqrt(np.maximum(b * b + c * (sq.max() - a), 0))) / c))
    bound = sq.sum(1).max() if threshold == "max" else sq.sum(1).min()
    return math.sqrt(max(bound - a.sum(), 0) / (len(u) * c))  # sum_i b_i = 0 around the mean


def _max_dist(u, mal):
    return float(((u - mal) ** 2).sum(1).max())


def _sum_dist(u, mal):
    return float(((u - mal) ** 2).sum())


@pytest.mark.parametrize("perturbation", ["unit", "std", "sign"])
def test_minmax_finds_the_boundary_of_its_constraint(perturbation):
    u = honest(10, 6, seed=11, offset=0.3).numpy()
    tol = 1e-5
    gamma = minmax_gamma(torch.tensor(u), perturbation=perturbation, tol=tol)
    m, p = u.mean(0), _direction(u, perturbation)
    diameter2 = ((u[:, None] - u[None]) ** 2).sum(-1).max()
    assert _max_dist(u, m - gamma * p) <= diameter2
    assert _max_dist(u, m - (gamma + 2 * tol) * p) > diameter2  # a slightly larger gamma breaks it
    assert _max_dist(u, m - 1.05 * gamma * p) > diameter2
    assert gamma == pytest.approx(_reference_search(u, "minmax", perturbation), abs=1e-9)
    exact = _exact_boundary(u, "minmax", perturbation)
    assert exact - 2 * tol <= gamma <= exact < 20
    rows = minmax(torch.tensor(u), f=3, perturbation=perturbation).numpy()
    np.testing.assert_allclose(rows, np.tile(m - gamma * p, (3, 1)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threshold", ["max", "min"])
@pytest.mark.parametrize("perturbation", ["unit", "std", "sign"])
def test_minsum_finds_the_boundary_of_its_constraint(perturbation, threshold):
    u = honest(10, 6, seed=12, offset=-0.2).numpy()
    tol = 1e-5
    gamma = minsum_gamma(torch.tensor(u), perturbation=perturbation, threshold=threshold)
    m, p = u.mean(0), _direction(u, perturbation)
    scores = ((u[:, None] - u[None]) ** 2).sum(-1).sum(1)
    bound = scores.max() if threshold == "max" else scores.min()
    assert _sum_dist(u, m - gamma * p) <= bound
    assert _sum_dist(u, m - (gamma + 2 * tol) * p) > bound
    assert gamma == pytest.approx(_reference_search(u, "minsum", perturbation, threshold=threshold), abs=1e-9)
    exact = _exact_boundary(u, "minsum", perturbation, threshold)
    assert exact - 2 * tol <= gamma <= exact < 20
    rows = minsum(torch.tensor(u), f=2, perturbation=perturbation, threshold=threshold).numpy()
    np.testing.assert_allclose(rows, np.tile(m - gamma * p, (2, 1)), rtol=1e-12, atol=1e-12)


def test_minsum_paper_bound_allows_at_least_the_code_bound():
    u = honest(8, 5, seed=2)
    assert minsum_gamma(u, threshold="max") > minsum_gamma(u, threshold="min") > 0


def test_minmax_hand_computed_two_points():
    # u = (0, 0) and (2, 0): m = (1, 0), unit p = (1, 0), D = 2; max_i |1 - g - u_i| <= 2 -> g <= 1
    u = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    assert minmax_gamma(u) == pytest.approx(1.0, abs=2e-5) and minmax_gamma(u) <= 1.0
    # min-sum: (1 - g)^2 + (1 + g)^2 = 2 + 2 g^2 <= max_i sum_j |u_i - u_j|^2 = 4 -> g <= 1 as well
    assert minsum_gamma(u) == pytest.approx(1.0, abs=2e-5) and minsum_gamma(u) <= 1.0


def test_search_cannot_pass_twice_gamma_init():
    u = honest(6, 4, seed=4) * 1000  # the boundary is in the thousands
    assert 20 - 2e-5 <= minmax_gamma(u) < 20
    exact = _exact_boundary(u.numpy(), "minmax", "unit")
    assert exact > 1000
    assert exact - 2e-5 <= minmax_gamma(u, gamma_init=exact) <= exact


def test_degenerate_inputs_give_the_mean():
    row = torch.tensor([[1.0, -2.0, 3.0]], dtype=torch.float64)
    for fn in (minmax, minsum):
        for perturbation in ("unit", "std", "sign"):
            assert torch.equal(fn(row, f=2, perturbation=perturbation), row.repeat(2, 1))  # one row: diameter 0
            same = row.repeat(4, 1)
            assert torch.equal(fn(same, f=1, perturbation=perturbation), row)  # identical rows
    zero_mean = torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    out = minmax(zero_mean, f=1)  # no direction (p = 0): any gamma is feasible and the mean is sent
    assert torch.equal(out, torch.zeros(1, 2, dtype=torch.float64))


def test_minmax_minsum_option_checks():
    with pytest.raises(ValueError, match="perturbation must be one of"):
        minmax(H, f=1, perturbation="gauss")
    with pytest.raises(ValueError, match="gamma_init"):
        minsum(H, f=1, gamma_init=0.0)
    with pytest.raises(ValueError, match="tol"):
        minmax(H, f=1, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        minmax(H, f=1, max_iter=0)
    with pytest.raises(ValueError, match="threshold"):
        minsum(H, f=1, threshold="mean")


def test_max_iter_stops_early_with_a_feasible_gamma():
    u = honest(6, 4, seed=9)
    assert minmax_gamma(u, max_iter=1) in (0.0, 10.0)
    assert minmax_gamma(u, max_iter=3) <= _exact_boundary(u.numpy(), "minmax", "unit")


_values = st.floats(-10, 10).map(lambda v: round(v, 3))


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 6).flatmap(lambda n: st.lists(st.lists(_values, min_size=3, max_size=3), min_size=n, max_size=n)),
    st.sampled_from(["minmax", "minsum-max", "minsum-min"]),
    st.sampled_from(["unit", "std", "sign"]),
)
def test_gamma_is_within_2_tol_below_the_exact_boundary(rows, kind, perturbation):
    u = np.array(rows, dtype=np.float64)
    tol, gamma_init = 1e-5, 10.0
    kind, _, threshold = kind.partition("-")
    t = torch.tensor(u)
    if kind == "minmax":
        gamma = minmax_gamma(t, perturbation=perturbation)
    else:
        gamma = minsum_gamma(t, perturbation=perturbation, threshold=threshold)
    exact = _exact_boundary(u, kind, perturbation, threshold or "max")
    slack = 1e-7 * (1 + min(exact, 2 * gamma_init))
    assert min(exact, 2 * gamma_init) - 2 * tol - slack <= gamma <= exact + slack


# ---------------------------------------------------------------- adaptive ALIE and IPM


def _damage(h, byz_row, f, aggregator):
    """J = || aggregator(honest, f copies of the row) - mean(honest) ||."""
    return float((aggregator(torch.cat([h, byz_row.expand(f, -1)])) - h.mean(0)).norm())


def _alie_row(h, z):
    return h.mean(0) - z * h.std(0)


def _ipm_row(h, eps):
    return -eps * h.mean(0)


def test_line_maximize_probes_like_byzfl():
    probes = []

    def objective(x):
        probes.append(x)
        return -((x - 25.0) ** 2)

    # expansion 0 -> 10 -> 30 (better, delta doubles) -> 70 (worse: delta 40 * 0.8 = 32), then contraction
    # tries best + 32, + 25.6, + 20.48 only above the best: 25 is never reached
    best = line_maximize(objective, evals=7, start=0.0, delta=10.0, ratio=0.8)
    assert best == 30.0
    assert probes == pytest.approx([0.0, 10.0, 30.0, 70.0, 62.0, 55.6, 50.48])
    assert line_maximize(objective, evals=1, start=3.0, delta=10.0, ratio=0.8) == 3.0
    # 0 -> 1 -> 3 (better) -> 7 (worse), then 3 + 3.2 * 0.8^k until 3 + 4 * 0.8^9 = 3.537 beats 3; after that
    # every probe lies above the best, so the optimum 3.3 below it is never reached
    seen = []

    def near_3_3(x):
        seen.append(x)
        return -((x - 3.3) ** 2)

    best = line_maximize(near_3_3, evals=60, start=0.0, delta=1.0, ratio=0.8)
    assert best == pytest.approx(3 + 4 * 0.8**9) and len(seen) == 60
    assert seen[:4] == [0.0, 1.0, 3.0, 7.0] and min(seen[4:]) > 3.0
    # only strict improvements move: on a plateau (a saturated median) the smallest scale reaching it stays
    assert line_maximize(lambda x: min(x, 10.0), evals=20, start=0.0, delta=10.0, ratio=0.8) == 10.0


@pytest.mark.parametrize(
    "kw, match",
    [({"evals": 0}, "evals"), ({"delta": 0.0}, "delta"), ({"ratio": 0.5}, "ratio"), ({"start": math.nan}, "start")],
)
def test_line_search_option_checks(kw, match):
    with pytest.raises(ValueError, match=match):
        alie_adaptive(H, f=1, aggregator=MEAN, **kw)


def test_aggregator_must_return_a_vector():
    with pytest.raises(ValueError, match=r"aggregator must map \(n, d\) to \(d,\)"):
        ipm_adaptive(H, f=1, aggregator=lambda u: u)


@pytest.mark.parametrize("scale_fn, row_fn", [(alie_adaptive_scale, _alie_row), (ipm_adaptive_scale, _ipm_row)])
def test_against_the_mean_the_damage_is_unbounded_and_the_search_expands_every_step(scale_fn, row_fn):
    h = honest(10, 5, seed=21, offset=0.5)
    scale = scale_fn(h, f=3, aggregator=MEAN)
    assert scale == 10.0 * (2**19 - 1)  # start + delta * (2^(evals-1) - 1): every expansion step improved
    grid = np.linspace(0, 1000, 2001)
    best_on_grid = max(_damage(h, row_fn(h, s), 3, MEAN) for s in grid)
    assert _damage(h, row_fn(h, scale), 3, MEAN) >= best_on_grid


@pytest.mark.parametrize(
    "scale_fn, attack_fn, row_fn, offset, top",
    [
        (alie_adaptive_scale, alie_adaptive, _alie_row, 1.0, 60.0),
        (ipm_adaptive_scale, ipm_adaptive, _ipm_row, 0.2, 1000.0),
    ],
)
def test_against_the_median_the_chosen_scale_maximises_the_damage_on_a_grid(scale_fn, attack_fn, row_fn, offset, top):
    h = honest(12, 8, seed=7, offset=offset)
    f = 3
    scale = scale_fn(h, f=f, aggregator=MEDIAN)
    grid = np.linspace(0, top, 4001)  # beyond where every coordinate's median has stopped moving
    damage = [_damage(h, row_fn(h, s), f, MEDIAN) for s in grid]
    assert _damage(h, row_fn(h, scale), f, MEDIAN) >= max(damage) - 1e-12
    assert _damage(h, row_fn(h, scale), f, MEDIAN) > damage[0] + 0.1  # the attack does something
    torch.testing.assert_close(attack_fn(h, f=f, aggregator=MEDIAN), row_fn(h, scale).repeat(f, 1))


def _filtered_mean(u, radius=2.5):
    """Averages the rows within ``radius`` of the coordinate-wise median: the damage peaks inside the range."""
    keep = (u - u.median(0).values).norm(dim=1) <= radius
    return u[keep].mean(0)


@pytest.mark.parametrize("scale_fn, row_fn", [(alie_adaptive_scale, _alie_row), (ipm_adaptive_scale, _ipm_row)])
def test_an_interior_maximum_is_found_to_grid_precision(scale_fn, row_fn):
    h = honest(10, 4, seed=3, offset=0.4)
    f = 2
    scale = scale_fn(h, f=f, aggregator=_filtered_mean, evals=60, delta=0.5)
    grid = np.linspace(0, 20, 8001)
    damage = np.array([_damage(h, row_fn(h, s), f, _filtered_mean) for s in grid])
    peak = grid[damage.argmax()]
    assert 0 < peak < 20 and damage[-1] < damage.max() / 2  # a genuine interior peak
    assert _damage(h, row_fn(h, scale), f, _filtered_mean) >= damage.max() - 1e-9
    assert abs(scale - peak) < 0.01


def _nnm(u, f):
    k = len(u) - f
    idx = torch.cdist(u, u).argsort(dim=1, stable=True)[:, :k]
    return u[idx].mean(1)


def _clip(u, c=2.0):
    norm = u.norm(dim=1, keepdim=True)
    return torch.where(norm > c, u * c / norm, u)


def _trmean(u, f):
    return u.sort(0).values[f : len(u) - f].mean(0)


def test_reproduces_byzfl_documented_optimal_attacks():
    """ByzFL's docstring examples: Optimal_IPM / Optimal_ALIE with TrMean(f=1) after [NNM(f=1), Clipping()]."""
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], dtype=torch.float64)

    def agg(u):
        return _trmean(_clip(_nnm(u, 1)), 1)

    torch.testing.assert_close(
        ipm_adaptive(x, f=1, aggregator=agg)[0], torch.tensor([-2.74877907, -3.43597384, -4.1231686]).double()
    )
    assert ipm_adaptive_scale(x, f=1, aggregator=agg) == pytest.approx(10 * 0.8**12)
    # ByzFL's ALIE is mean + tau*std searched towards positive tau: delta=-10 in our mean - z*std convention
    torch.testing.assert_close(
        alie_adaptive(x, f=1, aggregator=agg, delta=-10.0)[0],
        torch.tensor([12.91985116, 13.91985116, 14.91985116]).double(),
    )
    assert alie_adaptive_scale(x, f=1, aggregator=agg, delta=-10.0) < 0


def test_adaptive_rows_are_the_base_attack_at_the_chosen_scale():
    h = honest(9, 5, seed=8, offset=0.2)
    z = alie_adaptive_scale(h, f=2, aggregator=MEDIAN)
    assert torch.equal(alie_adaptive(h, f=2, aggregator=MEDIAN), alie(h, f=2, z=z))
    eps = ipm_adaptive_scale(h, f=2, aggregator=MEDIAN)
    assert torch.equal(ipm_adaptive(h, f=2, aggregator=MEDIAN), ipm(h, f=2, epsilon=eps))
