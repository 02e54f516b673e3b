"""The adversarial axis in the round: Byzantine identities, the attack stage, data poisoning, the
aggregation stage (state, detection metrics, config checks) and their composition with engines,
algorithms and compression. The attacks' and rules' math is tested against known answers in
tests/test_attacks.py and tests/test_aggregators.py; here the question is whether the pipeline
applies them to the right rows, with the right reference, at the right place."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedbench.config import ConfigError, compose, validate
from fedbench.simulation import Diverged, Simulation

# 8x8 digits, logistic regression: a round takes milliseconds
PIPE = ["num_clients=10", "clients_per_round=10", "partition=iid", "model=logreg", "progress=false", "rounds=3"]


def make(*overrides: str) -> Simulation:
    return Simulation(validate(compose(*PIPE, *overrides)))


def one_round(*overrides: str) -> tuple[Simulation, dict, torch.Tensor]:
    """The simulation after one round, its metrics row, and the clients' honest updates of that
    round (the same round trained without the attack)."""
    clean = make(*[o for o in overrides if not o.startswith("attack")], "attack=none")
    clean.step()
    sim = make(*overrides)
    row = sim.step()
    return sim, row, clean.last_record.updates


# ---- who is Byzantine -------------------------------------------------------------------------
def test_byzantine_identities_come_from_their_own_stream_and_count():
    a = make("attack=ipm", "attack.fraction=0.3")
    b = make("attack=alie", "attack.fraction=0.3", "aggregator=median")
    assert len(a.attack.byzantine) == 3 and list(a.attack.byzantine) == list(b.attack.byzantine)
    assert len(make("attack=ipm", "attack.num_byzantine=4", "attack.fraction=0.0").attack.byzantine) == 4
    other_seed = make("attack=ipm", "attack.fraction=0.3", "seed=1").attack.byzantine
    assert len(other_seed) == 3
    # floor(fraction * num_clients): 0.25 * 10 = 2.5 -> 2
    assert len(make("attack=ipm", "attack.fraction=0.25").attack.byzantine) == 2
    assert len(make().attack.byzantine) == 0


def test_the_round_record_marks_the_selected_byzantine_clients():
    sim = make("attack=ipm", "attack.num_byzantine=3", "clients_per_round=5")
    for _ in range(3):
        sim.step()
        rec = sim.last_record
        assert list(rec.byzantine) == [c in set(sim.attack.byzantine) for c in rec.clients]


def test_attack_none_can_mark_honest_byzantine_clients_for_a_baseline():
    sim, row, honest = one_round("attack=none", "attack.num_byzantine=3", "aggregator=krum", "aggregator.f=3")
    assert len(sim.attack.byzantine) == 3 and row["byzantine_selected"] == 3
    assert torch.equal(sim.last_record.updates, honest)  # they behave honestly
    assert row["flagged"] == 9 and 0 <= row["detect_recall"] <= 1  # krum keeps 1 of 10
    assert "byzantine_selected" not in make().step()


# ---- model poisoning: which rows, which reference -----------------------------------------------
def test_omniscient_ipm_replaces_exactly_the_byzantine_rows_with_minus_epsilon_times_the_honest_mean():
    sim, row, honest = one_round("attack=ipm", "attack.num_byzantine=3", "attack.epsilon=0.5")
    rec = sim.last_record
    byz = torch.as_tensor(rec.byzantine)
    assert int(byz.sum()) == 3 and row["byzantine_selected"] == 3
    expected = -0.5 * honest[~byz].mean(0)
    torch.testing.assert_close(rec.updates[byz], expected.expand(3, -1))
    torch.testing.assert_close(rec.updates[~byz], honest[~byz])  # honest clients untouched


def test_a_non_omniscient_attacker_only_uses_the_byzantine_clients_own_updates():
    sim, _, honest = one_round("attack=sign_flip", "attack.num_byzantine=3", "attack.omniscient=false")
    byz = torch.as_tensor(sim.last_record.byzantine)
    torch.testing.assert_close(sim.last_record.updates[byz], (-honest[byz].mean(0)).expand(3, -1))


def test_alie_uses_the_rounds_n_for_its_default_z():
    from scipy.stats import norm

    sim, _, honest = one_round("attack=alie", "attack.num_byzantine=3")
    byz = torch.as_tensor(sim.last_record.byzantine)
    h = honest[~byz]
    # n = 10 selected, f = 3: s = floor(10/2 + 1) - 3 = 3, z = Phi^-1((10 - 3 - 3) / 7)
    z = float(norm.ppf(4 / 7))
    expected = (h.mean(0) - z * h.std(0, unbiased=_alie_std_unbiased())).expand(3, -1)
    torch.testing.assert_close(sim.last_record.updates[byz], expected)


def _alie_std_unbiased() -> bool:
    """Which std the ALIE implementation documents (tests/test_attacks.py pins it by hand)."""
    from fedbench.attack import alie

    x = torch.tensor([[0.0], [2.0]])
    return bool(torch.isclose(alie(x, f=1, z=1.0), torch.tensor([[1.0 - 2**0.5]])).all())


def test_gaussian_attack_is_deterministic_per_round():
    a, _, _ = one_round("attack=gaussian", "attack.num_byzantine=2", "attack.std=0.1")
    b, _, _ = one_round("attack=gaussian", "attack.num_byzantine=2", "attack.std=0.1")
    byz = torch.as_tensor(a.last_record.byzantine)
    assert torch.equal(a.last_record.updates[byz], b.last_record.updates[byz])
    assert abs(float(a.last_record.updates[byz].std()) - 0.1) < 0.01


def test_attackers_act_before_the_uplink_codec_so_they_send_valid_messages():
    sim, row, _ = one_round("attack=large", "attack.num_byzantine=2", "uplink=topk", "uplink.k=5")
    upd = sim.last_record.updates
    assert int((upd != 0).sum(dim=1).max()) <= 5  # every row, Byzantine included, is a top-5 message
    assert row["uplink_bytes"] == sum(4 + 4 * 5 + n for n in _varint_index_bytes(upd))


def _varint_index_bytes(upd: torch.Tensor) -> list[int]:
    from fedbench.compress.topk import varint_lengths

    out = []
    for r in upd:
        idx = torch.nonzero(r).flatten()
        gaps = torch.cat([idx[:1], idx[1:] - idx[:-1] - 1])
        out.append(int(varint_lengths(gaps).sum()))
    return out


# ---- data poisoning ---------------------------------------------------------------------------
def test_label_flip_changes_only_the_byzantine_clients_labels_in_the_training_view():
    sim = make("attack=label_flip", "attack.num_byzantine=3")
    y, view = sim.data.y_train, sim.train_view.y
    byz_rows = np.concatenate([sim.parts[c] for c in sim.attack.byzantine])
    honest_rows = np.setdiff1d(np.arange(len(y)), byz_rows)
    assert torch.equal(view[byz_rows], 9 - y[byz_rows])
    assert torch.equal(view[honest_rows], y[honest_rows])
    assert torch.equal(sim.data.y_train, y)  # evaluation keeps the clean labels
    sim2 = make("attack=label_flip", "attack.num_byzantine=3", "attack.target=7")
    assert bool((sim2.train_view.y[byz_rows] == 7).all())


def test_backdoor_appends_triggered_copies_and_points_the_byzantine_partitions_at_them():
    sim = make("attack=backdoor", "attack.num_byzantine=2", "attack.poison_fraction=0.25", "attack.target=3")
    x, view = sim.data.x_train, sim.train_view
    n = len(x)
    expected = sum(max(1, round(0.25 * len(sim.parts[c]))) for c in sim.attack.byzantine)
    assert len(view.x) == n + expected and view.poisoned == expected
    new = view.x[n:]
    top = float(x.max())
    assert bool((new[:, :, -3:, -3:] == top).all())  # the 3x3 trigger, every channel
    assert bool((view.y[n:] == 3).all())
    for c in range(10):
        if c in set(sim.attack.byzantine):
            moved = view.parts[c] >= n
            assert moved.sum() == max(1, round(0.25 * len(sim.parts[c])))
            # the untriggered part of the image is the client's own sample
            src = sim.parts[c][moved]
            assert torch.equal(view.x[view.parts[c][moved]][:, :, :5, :5], x[src][:, :, :5, :5])
        else:
            assert np.array_equal(view.parts[c], sim.parts[c])


def test_backdoor_reports_its_success_rate_and_boost_scales_the_update():
    sim, row, honest = one_round("attack=backdoor", "attack.num_byzantine=2", "attack.boost=3")
    assert 0.0 <= row["backdoor_asr"] <= 1.0
    assert len(sim.backdoor_test) == int((sim.data.y_test != 0).sum())
    byz = torch.as_tensor(sim.last_record.byzantine)
    clean_honest = honest[~byz]
    torch.testing.assert_close(sim.last_record.updates[~byz], clean_honest)
    # a Byzantine client's update is 3x its (poisoned) training update, not its clean one
    plain, _, _ = one_round("attack=backdoor", "attack.num_byzantine=2", "attack.boost=1")
    torch.testing.assert_close(sim.last_record.updates[byz], 3 * plain.last_record.updates[byz])


def test_backdoor_needs_images_or_features_and_a_real_target_class():
    with pytest.raises(ConfigError, match="attack.target=12: no such class"):
        make("attack=backdoor", "attack.target=12")
    with pytest.raises(ConfigError, match="attack.trigger_size=9: larger than the inputs"):
        make("attack=backdoor", "attack.trigger_size=9")


# ---- aggregation stage -------------------------------------------------------------------------
def test_krum_flags_far_away_attackers_with_hand_countable_precision_and_recall():
    sim, row, _ = one_round("attack=large", "attack.num_byzantine=2", "aggregator=multikrum", "aggregator.f=2")
    # multikrum keeps m = n - f = 8 of 10; the 2 huge vectors are the 2 rejected
    assert row["flagged"] == 2 and row["detect_precision"] == 1.0 and row["detect_recall"] == 1.0
    assert torch.isfinite(sim.params).all()
    _, row, _ = one_round("attack=large", "attack.num_byzantine=2", "aggregator=krum", "aggregator.f=2")
    # krum keeps one vector: all 9 others flagged, both attackers among them
    assert row["flagged"] == 9 and row["detect_precision"] == pytest.approx(2 / 9) and row["detect_recall"] == 1.0
    _, row, _ = one_round("aggregator=krum", "aggregator.f=2")
    assert "detect_precision" not in row  # no attack: nothing to detect
    assert row["aggregate_time_s"] >= 0


def test_robust_rules_survive_nonfinite_updates_and_the_mean_diverges():
    for rule in ("median", "trimmed_mean", "krum", "geomed", "cclip", "norm_bound"):
        sim = make("attack=nonfinite", "attack.num_byzantine=2", f"aggregator={rule}", "aggregator.f=2")
        sim.step()
        assert torch.isfinite(sim.params).all(), rule
    sim = make("attack=nonfinite", "attack.num_byzantine=2")
    with pytest.raises(Diverged):
        sim.step()


def test_the_mean_aggregator_is_fedavg():
    """aggregator=mean is the sample-weighted mean: one round by hand."""
    sim = make("partition=dirichlet_class", "partition.alpha=0.5")
    w0 = sim.params.clone()
    sim.step()
    rec = sim.last_record
    w = torch.as_tensor(rec.num_samples, dtype=torch.float32)
    torch.testing.assert_close(sim.params, w0 + (w[:, None] * rec.updates).sum(0) / w.sum())


def test_cclip_centre_is_the_previous_aggregate_and_survives_a_checkpoint():
    run = ["aggregator=cclip", "aggregator.tau=0.05", "attack=ipm", "attack.num_byzantine=2"]
    a = make(*run)
    for _ in range(2):
        a.step()
    center = a.aggregator.center.clone()
    assert float(center.norm()) > 0
    state = a.state_dict()
    b = make(*run)
    b.load_state_dict(state)
    assert torch.equal(b.aggregator.center, center)
    for _ in range(2):
        a.step()
        b.step()
    assert torch.equal(a.params, b.params)


def test_fltrust_trains_a_root_update_on_clean_samples():
    sim = make("attack=label_flip", "attack.num_byzantine=3", "aggregator=fltrust", "aggregator.root_size=50")
    owners = sim.owner.cpu().numpy()[sim.root]
    assert len(sim.root) == 50 and not np.isin(owners, sim.attack.byzantine).any()
    row = sim.step()
    assert sim.last_record.root_update is not None and float(sim.last_record.root_update.norm()) > 0
    assert 0 <= row["flagged"] <= 10
    with pytest.raises(ConfigError, match="aggregator.root_size=100000"):
        make("aggregator=fltrust", "aggregator.root_size=100000")


def test_bucketing_mixes_rows_so_detection_is_not_reported():
    _, row, _ = one_round(
        "attack=ipm", "attack.num_byzantine=2", "aggregator=krum", "aggregator.f=1", "aggregator.pre=[bucketing]"
    )
    assert "detect_precision" not in row and "aggregate_time_s" in row


def test_adaptive_attack_runs_against_the_deployed_rule():
    sim, row, honest = one_round("attack=ipm_adaptive", "attack.num_byzantine=2", "aggregator=median")
    byz = torch.as_tensor(sim.last_record.byzantine)
    assert not torch.equal(sim.last_record.updates[byz], honest[byz])
    assert torch.isfinite(sim.params).all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["aggregator=krum", "aggregator.f=4"], r"aggregator=krum: needs n > 2f \+ 2, got clients_per_round=10, f=4"),
        (["aggregator=bulyan", "aggregator.f=2"], r"needs n >= 4f \+ 3"),
        (["aggregator=krum", "aggregator.f=2", "aggregator.pre=[bucketing]"], r"-> 5 buckets, f=2"),
        (["aggregator=trimmed_mean", "aggregator.f=5"], r"needs n > 2f"),
        (["aggregator.pre=[foo]"], r"aggregator.pre=\['foo'\]: out of range; allowed: a list of bucketing, nnm"),
        (["attack=ipm", "attack.num_byzantine=11"], r"attack.num_byzantine=11: more than num_clients=10"),
        (["attack=alie", "attack.fraction=1.5"], r"attack.fraction=1.5: out of range"),
        (["aggregator=krum", "attack=ipm", "attack.fraction=0.5"], r"needs n > 2f \+ 2, got clients_per_round=10, f=5"),
    ],
)
def test_rules_that_cannot_run_are_config_errors_before_training(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose(*PIPE, *overrides))


def test_default_f_is_the_expected_number_of_byzantine_clients_per_round():
    run = validate(compose(*PIPE, "num_clients=20", "clients_per_round=5", "attack=ipm", "attack.num_byzantine=6"))
    assert run.aggregator.assumed_f(run) == math.ceil(6 * 5 / 20)
    run = validate(compose(*PIPE))
    assert run.aggregator.assumed_f(run) == 0


# ---- composition -------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["fedavg", "fedprox", "scaffold", "feddyn", "fednova"])
def test_every_algorithm_runs_under_attack_with_a_robust_rule(algorithm):
    sim = make(f"algorithm={algorithm}", "attack=alie", "attack.num_byzantine=2", "aggregator=trimmed_mean")
    for _ in range(2):
        row = sim.step()
    assert math.isfinite(row["test_loss"]) and row["byzantine_selected"] == 2


def test_engines_agree_under_attack_and_robust_aggregation():
    run = ["attack=minmax", "attack.num_byzantine=2", "aggregator=median", "model=mlp"]
    a = make(*run, "engine=sequential")
    b = make(*run, "engine=vmap")
    a.step()
    b.step()
    torch.testing.assert_close(a.params, b.params, atol=1e-5, rtol=1e-4)


RULES = {  # rule -> extra keys; f = 1 Byzantine of 10 selected fits every rule's limit
    "mean": [],
    "median": [],
    "trimmed_mean": [],
    "meamed": [],
    "krum": [],
    "multikrum": ["aggregator.m=4"],
    "bulyan": [],
    "mda": [],
    "geomed": [],
    "cclip": ["aggregator.tau=0.1", "aggregator.iterations=2"],
    "norm_bound": ["aggregator.tau=0.1"],
    "fltrust": ["aggregator.root_size=30"],
    "dnc": ["aggregator.sub_dim=100"],
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_runs_on_both_engines_with_compression_and_pre_aggregation(rule):
    """One round per engine with an ALIE attacker, top-k uplink and NNM + clipping before the
    rule: the engines agree and the model moves by a finite amount."""
    run = [
        f"aggregator={rule}",
        *RULES[rule],
        "aggregator.f=1",
        "aggregator.pre=[nnm,clip]",
        "aggregator.clip_tau=1.0",
        "attack=alie",
        "attack.num_byzantine=1",
        "uplink=topk",
        "uplink.fraction=0.2",
        "rounds=1",
    ]
    out = []
    for engine in ("sequential", "vmap"):
        sim = make(*run, f"engine={engine}")
        w0 = sim.params.clone()
        sim.step()
        assert torch.isfinite(sim.params).all() and not torch.equal(sim.params, w0), (rule, engine)
        out.append(sim.params)
    torch.testing.assert_close(out[0], out[1], atol=1e-5, rtol=1e-4)


ATTACKS = [
    "label_flip",
    "backdoor",
    "sign_flip",
    "gaussian",
    "large",
    "nonfinite",
    "alie",
    "ipm",
    "minmax",
    "minsum",
    "mimic",
    "alie_adaptive",
    "ipm_adaptive",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_attack_runs_against_bucketing_and_krum_with_compression(attack):
    sim = make(
        f"attack={attack}",
        "attack.num_byzantine=2",
        "aggregator=krum",
        "aggregator.f=1",
        "aggregator.pre=[bucketing]",
        "uplink=fp16",
    )
    for _ in range(2):
        row = sim.step()
    assert torch.isfinite(sim.params).all() and row["byzantine_selected"] == 2
    assert math.isfinite(row["test_acc"])
    if attack == "backdoor":
        assert 0 <= row["backdoor_asr"] <= 1
