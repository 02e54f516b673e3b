"""Feature skew (per-client noise and rotation, applied in the batch function) and composed
partitions (quantity x label x feature skew in one config)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fake_runs import set_keys

from fedbench.config import ConfigError, compose, validate
from fedbench.data.batch import BatchPrep
from fedbench.data.skew import feature_skew, rotate
from fedbench.engine.schedule import make_schedule
from fedbench.partition import PartitionError, dirichlet_per_client, partition_stats
from fedbench.partition.quantity import draw_sizes
from fedbench.rng import numpy_rng
from fedbench.runner import run_experiment
from fedbench.simulation import Simulation

ONE_STEP = SimpleNamespace(batch_size=256, local_epochs=1, local_steps=None)


def skewed_prep(num_clients, noise=0.0, rotation=0.0, shape=(1, 8, 8), **prep) -> BatchPrep:
    return BatchPrep(**prep, skew=feature_skew(num_clients, noise, rotation, "test", torch.zeros(1, *shape)))


def batch(prep, client, n=256, seed=0, round_=1, local=ONE_STEP):
    """Step 0 of ``client``'s schedule over samples ``0..n-1``: (index, aug) as the engines pass them."""
    s = make_schedule(np.arange(n), local, seed, round_, client, prep)
    length = int(s.lengths[0])
    return torch.as_tensor(s.index[0, :length]), torch.as_tensor(s.aug[0, :length])


# ---- noise ---------------------------------------------------------------------------------------
def test_noise_std_per_client_is_sigma_i_over_n_minus_1():
    """NIID-Bench's code: sigma_i = noise * i / (N - 1), client 0 clean. 256 x 64 = 16,384 draws per
    client: the empirical std is within 3% of sigma_i (its standard error is 0.55%)."""
    prep = skewed_prep(5, noise=0.4)
    x = torch.rand(256, 1, 8, 8)
    for i in range(5):
        idx, aug = batch(prep, i)
        diff = prep(x[idx], aug) - x[idx]
        want = 0.4 * i / 4
        if i == 0:
            assert torch.equal(diff, torch.zeros_like(diff))
        else:
            assert float(diff.std()) == pytest.approx(want, rel=0.03)
            assert abs(float(diff.mean())) < 4 * want / math.sqrt(diff.numel())
    assert torch.equal(prep(x), x)  # no aug (evaluation): clean


def test_noise_is_in_pixel_units_under_normalisation():
    """uint8 images: noise of std sigma_i on the [0, 1] scale, i.e. sigma_i / std[c] once normalised."""
    prep = skewed_prep(3, noise=0.2, scale=1 / 255, mean=(0.5,), std=(0.25,))
    clean = BatchPrep(scale=1 / 255, mean=(0.5,), std=(0.25,))
    x = torch.randint(0, 256, (256, 1, 8, 8), dtype=torch.uint8)
    idx, aug = batch(prep, 2)
    diff = (prep(x[idx], aug) - clean(x[idx])) * 0.25
    assert float(diff.std()) == pytest.approx(0.2, rel=0.03)


def test_noise_is_deterministic_per_seed_round_client_step():
    prep = skewed_prep(4, noise=0.5)
    x = torch.zeros(256, 1, 8, 8)
    a = prep(*_gather(x, batch(prep, 3)))
    assert torch.equal(a, prep(*_gather(x, batch(prep, 3))))
    for other in (batch(prep, 3, seed=1), batch(prep, 3, round_=2), batch(prep, 2)):
        assert not torch.allclose(a, prep(*_gather(x, other)))
    two_steps = SimpleNamespace(batch_size=128, local_epochs=1, local_steps=None)
    s = make_schedule(np.arange(256), two_steps, 0, 1, 3, prep)
    assert s.aug[0, 0, 4] != s.aug[1, 0, 4]  # a fresh seed every step


def _gather(x, idx_aug):
    idx, aug = idx_aug
    return x[idx], aug


def test_noise_leaves_batches_and_augmentation_unchanged():
    local = SimpleNamespace(batch_size=7, local_epochs=2, local_steps=None)
    plain = make_schedule(np.arange(30), local, 5, 2, 1, BatchPrep(crop_padding=2, hflip=True))
    noisy = make_schedule(np.arange(30), local, 5, 2, 1, skewed_prep(3, noise=0.1, crop_padding=2, hflip=True))
    assert np.array_equal(plain.index, noisy.index) and np.array_equal(plain.aug, noisy.aug[..., :3])
    assert noisy.aug.shape == (*noisy.index.shape, 6)
    assert (noisy.aug[..., 3] == 1).all() and (noisy.aug[..., 5] == np.arange(7)).all()


def test_a_short_batch_gets_the_first_rows_of_the_full_draw():
    """The sequential engine passes a short last batch's real slots, vmap all of them: the same noise."""
    prep = skewed_prep(2, noise=1.0)
    x = torch.rand(256, 1, 8, 8)
    idx, aug = batch(prep, 1)
    full = prep(x[idx], aug)
    assert torch.equal(prep(x[idx[:37]], aug[:37]), full[:37])


def test_clients_outside_the_table_stay_clean():
    """FLTrust's server trains as virtual client N: its rows get neither noise nor rotation."""
    prep = skewed_prep(3, noise=1.0, rotation=90)
    x = torch.rand(256, 1, 8, 8)
    idx, aug = batch(prep, 3)
    assert torch.equal(prep(x[idx], aug), x[idx])


# ---- rotation ------------------------------------------------------------------------------------
def test_quarter_turns_equal_rot90():
    """rotation=270 over 4 clients: 0, 90, 180, 270 degrees, counter-clockwise as torch.rot90."""
    prep = skewed_prep(4, rotation=270, shape=(2, 5, 5))
    x = torch.rand(256, 2, 5, 5)
    for i in range(4):
        idx, aug = batch(prep, i)
        assert torch.equal(prep(x[idx], aug), torch.rot90(x[idx], i, (-2, -1)))


def test_full_turn_is_a_skew_and_zero_keys_are_none():
    """rotation=360 over 3 clients: 0, 180, 360 degrees (the middle client turned); both keys 0: off."""
    assert feature_skew(3, 0.0, 360.0, "t", torch.zeros(1, 1, 4, 4)).angle == (0.0, 180.0, 360.0)
    assert feature_skew(3, 0.0, 0.0, "t", torch.zeros(1, 1, 4, 4)) is None


def test_rotation_by_hand():
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 2] = 1.0  # right of the centre
    up = torch.zeros(3, 3)
    up[0, 1] = 1.0  # a quarter turn counter-clockwise puts it above the centre
    assert torch.equal(rotate(x, torch.tensor([90.0]))[0, 0], up)
    # 45 degrees, bilinear: output pixel (0, 2) reads the input at (dx, dy) = (sqrt 2, 0) from the
    # centre, 0.414 past pixel (1, 2); output (0, 1) reads (0.707, -0.707): weight 0.707 * 0.293
    r = rotate(x, torch.tensor([45.0]))[0, 0]
    assert float(r[0, 2]) == pytest.approx(2 - math.sqrt(2), abs=1e-6)
    assert float(r[0, 1]) == pytest.approx(math.sqrt(0.5) * (1 - math.sqrt(0.5)), abs=1e-6)
    centre = torch.zeros(1, 1, 3, 3)
    centre[0, 0, 1, 1] = 1.0
    assert float(rotate(centre, torch.tensor([45.0]))[0, 0, 0, 1]) == pytest.approx((1 - math.sqrt(0.5)) ** 2)


def test_non_square_half_turn_resamples_to_a_flip():
    x = torch.rand(3, 2, 4, 6)
    torch.testing.assert_close(rotate(x, torch.full((3,), 180.0)), x.flip(-2, -1), rtol=0, atol=1e-6)


# ---- config --------------------------------------------------------------------------------------
def one_line(fn) -> str:
    with pytest.raises(ConfigError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    ("overrides", "start"),
    [
        (["partition.noise=-1"], "partition.noise=-1.0: out of range; allowed: a finite number >= 0"),
        (
            ["partition=feature", "partition.rotation=400"],
            "partition.rotation=400.0: out of range; allowed: a number in [0, 360]",
        ),
        (
            ["partition=dirichlet_client", "partition.sizes=zipf"],
            "partition.sizes='zipf': out of range; allowed: equal, dirichlet, lognormal, powerlaw",
        ),
    ],
)
def test_bad_values_are_one_line_config_errors(overrides, start):
    assert one_line(lambda: validate(compose(*overrides))).startswith(start)


def test_rotation_of_feature_vectors_and_noise_on_tokens_are_refused():
    flat = [
        "dataset=synthetic",
        "dataset.input_shape=[20]",
        "dataset.num_train=200",
        "dataset.num_test=50",
        "model=logreg",
        "num_clients=4",
        "clients_per_round=2",
        "partition=iid",
        "device=cpu",
    ]
    msg = one_line(lambda: Simulation(validate(compose(*flat, "partition.rotation=90"))))
    assert msg.startswith("partition.rotation=90: rotates images of shape (C, H, W)") and "(20,)" in msg
    Simulation(validate(compose(*flat, "partition.noise=0.5")))  # noise on feature vectors is fine
    with pytest.raises(ValueError, match=r"^partition.noise=0.1: dataset=shakespeare holds torch.int64"):
        feature_skew(4, 0.1, 0.0, "shakespeare", torch.zeros(3, 80, dtype=torch.int64))


# ---- composed partition: sizes first, then labels by each client's prior ---------------------------
LABELS = np.random.default_rng(0).integers(0, 10, 20_000)


@pytest.mark.parametrize(
    ("law", "kw"), [("dirichlet", {"beta": 1.0}), ("lognormal", {"sigma": 1.0}), ("powerlaw", {"exponent": 1.2})]
)
def test_composed_sizes_come_first_from_the_quantity_law(law, kw):
    args = {"beta": 0.5, "sigma": 1.0, "exponent": 1.5, "min_size": 5, "max_attempts": 100_000, **kw}
    parts = dirichlet_per_client(LABELS, 20, 0.5, numpy_rng(3, "partition"), client_size=800, sizes=law, **args)
    want = draw_sizes(law, 800 * 20, 20, numpy_rng(3, "partition"), **args)
    assert [p.size for p in parts] == want.tolist() and want.sum() == 16_000 and want.min() >= 5
    flat = np.concatenate(parts)
    assert np.unique(flat).size == flat.size and flat.min() >= 0 and flat.max() < LABELS.size  # disjoint
    assert all(np.array_equal(p, np.sort(p)) for p in parts)
    assert np.std([p.size for p in parts]) > 50  # skewed sizes, not 800 each


def test_composed_labels_follow_each_clients_prior():
    """tv_mean (label skew against the global mix) rises as alpha falls, sizes lognormal throughout."""
    tv = []
    for alpha in (100.0, 1.0, 0.1):
        runs = [
            dirichlet_per_client(
                LABELS, 20, alpha, numpy_rng(s, "partition"), client_size=500, sizes="lognormal", min_size=5
            )
            for s in range(3)
        ]
        tv.append(np.mean([partition_stats(p, LABELS, 10)["tv_mean"] for p in runs]))
    # measured 0.15, 0.71, 0.87 (at alpha 100 the small lognormal clients' sampling noise alone)
    assert tv[0] < 0.25 < tv[1] < tv[2] and tv[2] > 0.8, tv


def test_equal_sizes_ignore_the_law_keys_and_errors_name_the_key():
    a = dirichlet_per_client(LABELS, 10, 0.5, numpy_rng(0, "partition"))
    b = dirichlet_per_client(LABELS, 10, 0.5, numpy_rng(0, "partition"), sigma=9.0, beta=1e-9)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and {p.size for p in a} == {2000}
    with pytest.raises(PartitionError, match="min_size=10 is more than the mean client size client_size=5"):
        dirichlet_per_client(LABELS, 4, 0.5, numpy_rng(0, "partition"), client_size=5, sizes="lognormal")
    with pytest.raises(PartitionError, match="sizes must be one of equal, dirichlet, lognormal, powerlaw, got 'zipf'"):
        dirichlet_per_client(LABELS, 4, 0.5, numpy_rng(0, "partition"), sizes="zipf")
    with pytest.raises(PartitionError, match=r"dirichlet_client with sizes=dirichlet found no sizes.*sizes=lognormal"):
        dirichlet_per_client(
            LABELS, 20, 0.5, numpy_rng(0, "partition"), client_size=50, sizes="dirichlet", beta=1e-3, max_attempts=2000
        )
    zero = dirichlet_per_client(
        LABELS, 30, 0.5, numpy_rng(1, "partition"), client_size=20, sizes="powerlaw", exponent=0.2, min_size=0
    )
    assert min(p.size for p in zero) == 0 and sum(p.size for p in zero) == 600  # empty clients are fine


# ---- through the simulation ----------------------------------------------------------------------
def sim_config(**over) -> dict:
    cfg = {
        "dataset": {"name": "digits"},
        "partition": {
            "name": "dirichlet_client",
            "alpha": 0.5,
            "client_size": 120,
            "sizes": "lognormal",
            "min_size": 20,
            "noise": 0.5,
            "rotation": 90.0,
        },
        "model": {"name": "cnn_small"},
        "algorithm": {"name": "fedavg", "lr": 0.05, "batch_size": 16, "momentum": 0.9},
        "server_opt": {"name": "sgd"},
        "engine": {"name": "vmap", "trace_after": 0},
        "logger": {"name": "none"},
        "rounds": 1,
        "num_clients": 8,
        "clients_per_round": 5,
        "client_metrics": False,
        "progress": False,
        "device": "cpu",
        "seed": 0,
    }
    return set_keys(cfg, over)


def one_round(cfg: dict) -> Simulation:
    sim = Simulation(validate(cfg))
    sim.step()
    return sim


@pytest.mark.parametrize("vmap", [{"trace_after": 0}, {"trace": False}], ids=["traced", "untraced"])
def test_engines_see_identical_skewed_batches(vmap):
    """Label x quantity x feature skew, one round: every client's local model agrees across engines
    (short last batches included: client sizes are lognormal), to float rounding of the same inputs."""
    vm = one_round(sim_config(engine={"name": "vmap", **vmap}))
    seq = one_round(sim_config(engine={"name": "sequential"}))
    assert len(set(seq.sizes[seq.last_record.clients].tolist())) > 1
    torch.testing.assert_close(vm.last_record.updates, seq.last_record.updates, rtol=1e-5, atol=1e-6)
    clean = one_round(sim_config(**{"partition.noise": 0.0, "partition.rotation": 0.0}))
    assert not torch.allclose(clean.last_record.updates, vm.last_record.updates, atol=1e-4)


def test_runs_are_reproducible_and_evaluation_is_clean():
    a, b = one_round(sim_config()), one_round(sim_config())
    assert torch.equal(a.last_record.updates, b.last_record.updates)
    other = one_round(sim_config(seed=1))
    assert other.last_record.updates.shape != a.last_record.updates.shape or not torch.equal(
        other.last_record.updates, a.last_record.updates
    )
    skewed = Simulation(validate(sim_config(client_metrics=True)))
    plain = Simulation(validate(sim_config(client_metrics=True, **{"partition.noise": 0.0, "partition.rotation": 0.0})))
    assert skewed.train_prep.skew is not None and skewed.data.prep.skew is None and plain.train_prep.skew is None
    assert skewed.evaluate() == plain.evaluate()  # same initial model, clean test and client inputs


def test_cli_run_with_noise_composed_on_label_skew(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedbench",
            "partition=dirichlet_class",
            "partition.noise=0.1",
            "rounds=2",
            "num_clients=6",
            "clients_per_round=3",
            "progress=false",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds_completed"] == 2
    assert math.isfinite(summary["final"]["test_acc"]) and math.isfinite(summary["final"]["train_loss"])


def test_all_three_skews_in_one_config_run_to_completion(tmp_path):
    cfg = compose(
        "partition=dirichlet_client",
        "partition.sizes=powerlaw",
        "partition.alpha=0.3",
        "partition.client_size=60",
        "partition.noise=0.2",
        "partition.rotation=270",
        "rounds=2",
        "num_clients=6",
        "clients_per_round=3",
        "progress=false",
    )
    summary = run_experiment(cfg, tmp_path / "run", callbacks=[])
    assert summary["status"] == "completed", summary["error"]
    assert math.isfinite(summary["final"]["test_acc"])


COMPOSED = [
    "partition=dirichlet_client",
    "partition.sizes=lognormal",
    "num_clients=6",
    "clients_per_round=3",
    "rounds=2",
    "algorithm.local_steps=2",
    "model=cnn_small",  # digits are 1x8x8 images, so rotation applies
    "client_metrics=false",
    "progress=false",
    "device=cpu",
    "seed=3",  # round 1 samples clients 0, 2 and 5; sizes 73 to 598
]


@pytest.mark.parametrize("algorithm", ["fedavg", "fedprox", "scaffold", "feddyn", "fednova"])
def test_composed_skews_run_with_every_algorithm(algorithm):
    """Label x quantity x feature skew under each algorithm, 2 rounds in-process: finite weights, and
    round 1 differs from the same run without noise and rotation for the skewed clients (i > 0) only."""
    base = (*COMPOSED, f"algorithm={algorithm}")
    skewed = Simulation(validate(compose(*base, "partition.noise=0.1", "partition.rotation=90")))
    clean = Simulation(validate(compose(*base)))
    assert skewed.train_prep.skew is not None and clean.train_prep.skew is None
    assert len(set(skewed.sizes.tolist())) > 1  # lognormal sizes
    skewed.step()
    clean.step()
    a, b = skewed.last_record, clean.last_record
    assert a.clients.tolist() == b.clients.tolist() == [0, 2, 5]  # same sizes, same sampling
    assert torch.equal(a.updates[0], b.updates[0])  # client 0 is clean: sigma_0 = 0, angle_0 = 0
    for row in (1, 2):  # clients 2 and 5: noise 0.04 and 0.1, turned 36 and 90 degrees
        assert not torch.allclose(a.updates[row], b.updates[row], atol=1e-4)
    assert not torch.equal(skewed.params, clean.params)
    skewed.step()
    assert skewed.round == 2 and bool(torch.isfinite(skewed.params).all())


def test_partition_json_lists_each_clients_noise_and_angle(tmp_path):
    from fedbench.config import compose
    from fedbench.runner import run_experiment

    cfg = compose(
        "num_clients=5",
        "clients_per_round=2",
        "partition=iid",
        "partition.noise=0.2",
        "partition.rotation=90",
        "model=logreg",
        "rounds=1",
        "progress=false",
    )
    s = run_experiment(cfg, tmp_path, callbacks=[])
    part = json.loads((tmp_path / "partition.json").read_text())
    assert part["client_noise"] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert part["client_rotation"] == pytest.approx([0.0, 22.5, 45.0, 67.5, 90.0])
    assert "client_noise" not in s["partition"] and "tv_mean" in s["partition"]


def test_client_fractions_by_hand():
    from fedbench.partition.feature import client_fractions

    assert client_fractions(1).tolist() == [0.0]
    assert client_fractions(2).tolist() == [0.0, 1.0]
    assert client_fractions(5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
