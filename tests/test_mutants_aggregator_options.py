"""Known-answer tests for fedbench/aggregator/options.py: the call-time methods (apply, needs,
assumed_f, rows, check) that mutation testing found unchecked."""

from __future__ import annotations

import re
from fractions import Fraction
from types import SimpleNamespace

import pytest
import torch

from fedbench.aggregator.options import (
    Bulyan,
    CClip,
    DnC,
    FLTrust,
    GeoMed,
    Krum,
    Median,
    MultiKrum,
    NormBound,
    RuleContext,
    _pre_ok,
)


def t(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


def ctx(f, generator=None):
    return RuleContext(f=f, generator=lambda: generator, center=None, root=None)


def test_norm_bound_weighs_the_clipped_rows_and_flags_only_rows_longer_than_tau():
    # tau = 1: [2, 0] (norm 2) is clipped to [1, 0] and flagged; [0, 1] has norm exactly tau, is
    # kept as is and not flagged (flag is norm > tau). Weights 3, 1:
    # (3 [1, 0] + 1 [0, 1]) / 4 = [0.75, 0.25] (equal weights would give [0.5, 0.5])
    value, flagged = NormBound(tau=1.0).apply(t([[2.0, 0.0], [0.0, 1.0]]), t([3.0, 1.0]), ctx(0))
    assert value.tolist() == [0.75, 0.25]
    assert flagged.tolist() == [True, False]


def test_bulyan_flags_the_rows_its_selection_left_out():
    # n = 7, f = 1: theta = 5 rows picked by repeated Krum; the cluster 0..4 is picked (the outliers
    # +-100 are far from everything; at the last pick, with 0 neighbours, every score is 0 and
    # argmin takes the first row of the pool, a cluster row), so rows 5 and 6 are flagged.
    # value: beta = 5 - 2 = 3 values closest to the median 2: 1, 2, 3, mean 2
    rows = t([[0.0], [1.0], [2.0], [3.0], [4.0], [100.0], [-100.0]])
    value, flagged = Bulyan().apply(rows, torch.ones(7, dtype=torch.float64), ctx(1))
    assert value.tolist() == [2.0]
    assert flagged.tolist() == [False] * 5 + [True, True]


def test_dnc_drops_floor_filter_frac_times_f_rows():
    # d = 1, f = 1, filter_frac = 2: drop floor(2 * 1) = 2 rows. Rows 0, 1, 2, 10, mean 3.25,
    # scores (u - 3.25)^2 = 10.5625, 5.0625, 1.5625, 45.5625: rows 1 and 2 are kept, mean 1.5
    # (filter_frac 1 would drop only row 3: mean 1)
    rows = t([[0.0], [1.0], [2.0], [10.0]])
    value, flagged = DnC(filter_frac=2.0).apply(rows, torch.ones(4, dtype=torch.float64), ctx(1, torch.Generator()))
    assert value.tolist() == [1.5]
    assert flagged.tolist() == [True, False, False, True]


def test_dnc_runs_its_iterations_on_coordinate_subsets_and_keeps_the_rows_kept_every_time():
    # d = 2, sub_dim = 1: each iteration scores one drawn column. f = 1 drops one row per iteration.
    # Column 0 = 10, 0, 0, 1, -1 (mean 2): row 0 is farthest (8) and dropped.
    # Column 1 = 0, 8, 0, 1, -1 (mean 1.6): row 1 is farthest (6.4) and dropped.
    # Once both columns were drawn, the rows kept in every iteration are 2, 3, 4: mean [0, 0].
    # (One iteration, or all columns at once, keeps 4 rows: the mean is not [0, 0].)
    rows = t([[10.0, 0.0], [0.0, 8.0], [0.0, 0.0], [1.0, 1.0], [-1.0, -1.0]])
    # the draws, replayed with torch from the same seed: randperm(2)[:1] per iteration
    g = torch.Generator().manual_seed(3)
    drawn = {int(torch.randperm(2, generator=g)[0]) for _ in range(8)}
    assert drawn == {0, 1}
    cfg = DnC(iterations=8, sub_dim=1)
    g = torch.Generator().manual_seed(3)
    value, flagged = cfg.apply(rows, torch.ones(5, dtype=torch.float64), ctx(1, g))
    assert value.tolist() == [0.0, 0.0]
    assert flagged.tolist() == [True, True, False, False, False]


def test_cclip_flags_rows_farther_than_tau_from_the_centre():
    # centre [1, 0], tau = 1: u - c = [2, 0] (distance 2 > 1: clipped to [1, 0], flagged) and
    # [-0.5, 0] (0.5: kept, not flagged); one iteration: c + mean = [1, 0] + [0.25, 0] = [1.25, 0]
    rows = t([[3.0, 0.0], [0.5, 0.0]])
    c = RuleContext(f=0, generator=lambda: None, center=t([1.0, 0.0]), root=None)
    value, flagged = CClip(tau=1.0).apply(rows, torch.ones(2, dtype=torch.float64), c)
    assert value.tolist() == [1.25, 0.0]
    assert flagged.tolist() == [True, False]


def test_fltrust_flags_exactly_the_rows_with_trust_zero():
    # root [1, 0]: [2, 0] has cosine 1 (trust 1, not flagged), [0, 3] cosine 0 and [-1, 0] cosine -1
    # (ReLU: trust 0, flagged). Aggregate: only row 0, rescaled to |root| = 1: [1, 0]
    rows = t([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    c = RuleContext(f=0, generator=lambda: None, center=None, root=t([1.0, 0.0]))
    value, flagged = FLTrust().apply(rows, torch.ones(3, dtype=torch.float64), c)
    assert value.tolist() == [1.0, 0.0]
    assert flagged.tolist() == [False, True, True]


ROWS_1D = [[0.0], [1.0], [10.0]]


def _one_weiszfeld_step():
    # z0 = mean = 11/3; distances 11/3, 8/3, 19/3; beta_i proportional to 1 / distance:
    # z1 = (0 * 3/11 + 1 * 3/8 + 10 * 3/19) / (3/11 + 3/8 + 3/19) ~ 2.4254 (the median is 1)
    b = [Fraction(3, 11), Fraction(3, 8), Fraction(3, 19)]
    return float(sum(bi * int(r[0]) for bi, r in zip(b, ROWS_1D, strict=True)) / sum(b))


def test_geomed_hands_its_weights_and_nu_to_the_solver():
    # nu = 100 exceeds every distance, so beta_i = alpha_i / 100 and every iterate is the weighted
    # mean: (1 * 0 + 1 * 1 + 6 * 10) / 8 = 7.625 (equal weights: 11/3; nu = 1e-6: the weighted
    # geometric median, 10)
    value, flagged = GeoMed(nu=100.0).apply(t(ROWS_1D), t([1.0, 1.0, 6.0]), ctx(0))
    assert value.item() == pytest.approx(7.625, abs=1e-12) and flagged is None


def test_geomed_stops_after_max_iter_updates():
    value, _ = GeoMed(max_iter=1, tol=0.0).apply(t(ROWS_1D), torch.ones(3, dtype=torch.float64), ctx(0))
    assert value.item() == pytest.approx(_one_weiszfeld_step(), abs=1e-12)


def test_geomed_stops_when_the_objective_changes_by_at_most_tol_times_its_value():
    # objective at z0 = 11/3: (11 + 8 + 19) / 9 = 4.222; at z1 ~ 2.4254: (2.4254 + 1.4254 + 7.5746) / 3
    # = 3.809; the change 0.41 <= 1.0 * 3.809, so tol = 1 stops after the first update
    value, _ = GeoMed(tol=1.0).apply(t(ROWS_1D), torch.ones(3, dtype=torch.float64), ctx(0))
    assert value.item() == pytest.approx(_one_weiszfeld_step(), abs=1e-12)


def test_cclip_runs_its_iterations_from_the_centre_and_a_row_at_distance_tau_is_not_flagged():
    # centre 1, tau = 1, rows 3, 2, 0.5: distances 2 (flagged), 1 (= tau: not flagged), 0.5.
    # iteration 1: clip(2, 1, -0.5) = 1, 1, -0.5, mean 0.5: v1 = 1.5
    # iteration 2: clip(1.5, 0.5, -1) = 1, 0.5, -1, mean 1/6: v2 = 1.5 + 1/6 = 5/3
    rows = t([[3.0], [2.0], [0.5]])
    c = RuleContext(f=0, generator=lambda: None, center=t([1.0]), root=None)
    value, flagged = CClip(tau=1.0, iterations=2).apply(rows, torch.ones(3, dtype=torch.float64), c)
    assert value.item() == pytest.approx(5 / 3, abs=1e-12)
    assert flagged.tolist() == [True, False, False]


def test_multikrum_averages_its_m_best_rows():
    # n = 5, f = 1: Krum scores sum the squared distances to the n - f - 2 = 2 nearest others:
    # rows 0, 1, 2, 4, 100 score 1 + 4 = 5, 1 + 1 = 2, 1 + 4 = 5, 4 + 9 = 13, huge.
    # m = 1 keeps row 1 alone: [1], the rest flagged (m = n - f = 4 would give 7 / 4)
    rows = t([[0.0], [1.0], [2.0], [4.0], [100.0]])
    value, flagged = MultiKrum(m=1).apply(rows, torch.ones(5, dtype=torch.float64), ctx(1))
    assert value.tolist() == [1.0]
    assert flagged.tolist() == [True, False, True, True, True]


def run_cfg(num_clients, clients_per_round, byzantine):
    """The keys of a validated run that ``assumed_f`` and ``check`` read."""
    attack = SimpleNamespace(count=lambda n: byzantine)
    return SimpleNamespace(num_clients=num_clients, clients_per_round=clients_per_round, attack=attack)


def test_assumed_f_is_the_set_f_or_the_expected_byzantine_clients_per_round():
    # 6 Byzantine of 20, 5 per round: ceil(6 * 5 / 20) = ceil(1.5) = 2; 1 of 20: ceil(0.25) = 1
    assert Median().assumed_f(run_cfg(20, 5, 6)) == 2
    assert Median().assumed_f(run_cfg(20, 5, 1)) == 1
    assert Median().assumed_f(run_cfg(20, 5, 0)) == 0
    # a set f wins, f = 0 included (it is not "unset")
    assert Median(f=0).assumed_f(run_cfg(20, 5, 6)) == 0
    assert Median(f=3).assumed_f(run_cfg(20, 5, 6)) == 3
    # never more than the clients of a round: 30 "Byzantine" of 20, ceil(30 * 5 / 20) = 8 -> 5
    assert Median().assumed_f(run_cfg(20, 5, 30)) == 5


def test_rows_counts_the_buckets_after_bucketing():
    # ceil(10 / 3) = 4, ceil(9 / 2) = 5; other steps keep n
    assert Median(pre=["nnm", "bucketing", "clip"], bucket_size=3).rows(10) == 4
    assert Median(pre=["bucketing"], bucket_size=2).rows(9) == 5
    assert Median(pre=["nnm", "clip", "arc"], bucket_size=3).rows(10) == 10


def test_pre_must_be_a_list_of_known_steps():
    assert _pre_ok([]) and _pre_ok(["bucketing", "nnm", "clip", "arc"])
    assert not _pre_ok(["nnm", "foo"])
    assert not _pre_ok("nnm") and not _pre_ok(("nnm",))


def test_check_says_what_the_rule_needs_and_how_to_fix_it():
    # 10 clients per round in buckets of 3: ceil(10 / 3) = 4 rows; Krum needs 4 > 2 * 2 + 2 = 6
    msg = Krum(f=2, pre=["bucketing"], bucket_size=3).check(run_cfg(10, 10, 0))
    assert msg == (
        "aggregator=krum: needs n > 2f + 2, got clients_per_round=10 -> 4 buckets, f=2; "
        "lower aggregator.f or raise clients_per_round"
    )
    # without bucketing: 7 > 2 * 2 + 2 = 6 runs; 6 does not
    assert Krum(f=2).check(run_cfg(10, 7, 0)) is None
    assert Krum(f=2).check(run_cfg(10, 6, 0)) == (
        "aggregator=krum: needs n > 2f + 2, got clients_per_round=6, f=2; lower aggregator.f or raise clients_per_round"
    )
    # the assumed f (ceil(4 * 6 / 10) = 3) is the one checked
    msg = Krum().check(run_cfg(10, 6, 4))
    assert re.fullmatch(r"aggregator=krum: needs n > 2f \+ 2, got clients_per_round=6, f=3; .*", msg)
    # a rule with no need (the median) runs at any n
    assert Median(f=5).check(run_cfg(10, 6, 0)) is None


def test_check_refuses_nnm_and_arc_unless_n_exceeds_f():
    for pre in (["nnm"], ["arc"], ["clip", "arc"]):
        assert Median(f=3, pre=pre).check(run_cfg(10, 3, 0)) == (
            f"aggregator.pre={pre}: nnm and arc need n > f, got clients_per_round=3, f=3"
        )
        assert Median(f=3, pre=pre).check(run_cfg(10, 4, 0)) is None
    # with bucketing the message names the buckets too (ceil(4 / 2) = 2)
    assert Median(f=4, pre=["bucketing", "nnm"]).check(run_cfg(10, 4, 0)) == (
        "aggregator.pre=['bucketing', 'nnm']: nnm and arc need n > f, got clients_per_round=4 -> 2 buckets, f=4"
    )
    assert Median(f=3, pre=["clip", "bucketing"]).check(run_cfg(10, 3, 0)) is None


def test_check_hands_the_config_to_the_rules_need():
    # multikrum's need reads its own m: 7 rows, f = 1: 7 > 2 + 2 and m = 7 <= 7 runs; m = 8 does not
    assert MultiKrum(f=1, m=7).check(run_cfg(10, 7, 0)) is None
    assert MultiKrum(f=1, m=8).check(run_cfg(10, 7, 0)) == (
        "aggregator=multikrum: needs n > 2f + 2 and m <= n, got clients_per_round=7, f=1; "
        "lower aggregator.f or raise clients_per_round"
    )
