"""partition=natural over the datasets whose clients come with the data: FedProx's synthetic
devices and LEAF's users (tiny JSON files in LEAF's real layout), end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_data_natural import _write

from fedbench.config import ConfigError, compose, validate
from fedbench.data import load_dataset
from fedbench.data.leaf import ALL_LETTERS
from fedbench.partition import PartitionError, natural
from fedbench.runner import run_experiment
from fedbench.simulation import Simulation

RUN = ["rounds=2", "progress=false", "partition=natural"]


def test_natural_partition_known_answer():
    groups = np.array([2, 0, 1, 0, 2, 1])
    labels = np.zeros(6, np.int64)
    parts = natural(labels, 2, np.random.default_rng(0), groups)
    assert [p.tolist() for p in parts] == [[1, 3], [2, 5]]  # natural clients 0 and 1; client 2 unused
    picked = natural(labels, 2, np.random.default_rng(0), groups, select="random")
    chosen = np.sort(np.random.default_rng(0).choice(3, 2, replace=False))  # the same draw, by hand
    by_group = {0: [1, 3], 1: [2, 5], 2: [0, 4]}
    assert [p.tolist() for p in picked] == [by_group[g] for g in chosen]
    with pytest.raises(PartitionError, match=r"num_clients=4: the dataset has 3 natural clients; allowed: 1"):
        natural(labels, 4, np.random.default_rng(0), groups)


def test_fedprox_synthetic_devices_are_the_clients(tmp_path):
    cfg = compose(*RUN, "dataset=fedprox_synthetic", "num_clients=30", "clients_per_round=5", "model=logreg")
    sim = Simulation(validate(cfg))
    data = load_dataset({"name": "fedprox_synthetic", "alpha": 0.0, "beta": 0.0, "iid": False}, 0)
    sizes = np.bincount(data.groups, minlength=30)
    assert sim.sizes.tolist() == sizes.tolist() and sizes.min() >= int(0.9 * 50)  # >= 50 per device, 90% train
    assert sim.data.x_train.shape[1:] == (60,) and sim.data.num_classes == 10
    summary = run_experiment(cfg, tmp_path, callbacks=[])
    assert summary["status"] == "completed" and summary["num_params"] == 60 * 10 + 10


def test_natural_needs_a_dataset_with_natural_clients():
    with pytest.raises(ConfigError, match=r"^partition=natural: dataset=digits has no natural clients; allowed with"):
        validate(compose("partition=natural"))
    with pytest.raises(
        ConfigError,
        match=r"^num_clients=31: fedprox_synthetic has 30 natural clients; allowed: 1 <= num_clients <= 30$",
    ):
        validate(compose("partition=natural", "dataset=fedprox_synthetic", "num_clients=31"))


def _shakespeare_tree(root):
    def sample(seed):
        rng = np.random.default_rng(seed)
        return "".join(rng.choice(list(ALL_LETTERS[1:]), 80)), str(rng.choice(list("abc")))

    for split, n in (("train", 3), ("test", 1)):
        data = {}
        for u in ("speaker_a", "speaker_b", "speaker_c"):
            xs, ys = zip(*(sample(hash((u, split, i)) % 1000) for i in range(n)))
            data[u] = {"x": list(xs), "y": list(ys)}
        _write(root / split / f"all_data_{split}.json", ["speaker_a", "speaker_b", "speaker_c"], data)


def test_leaf_datasets_run_with_their_users_as_clients(tmp_path):
    femnist = tmp_path / "femnist"
    for split, n in (("train", 4), ("test", 2)):
        rng = np.random.default_rng(len(split))
        data = {
            u: {"x": (rng.integers(0, 256, (n, 784)) / 255).tolist(), "y": rng.integers(0, 62, n).tolist()}
            for u in ("w1", "w2", "w3")
        }
        _write(femnist / split / "data.json", ["w1", "w2", "w3"], data)
    overrides = ["dataset=femnist", f"dataset.root={femnist}", "num_clients=3", "clients_per_round=2", "model=logreg"]
    s = run_experiment(compose(*RUN, *overrides), tmp_path / "f", callbacks=[])
    assert s["status"] == "completed", s["error"]
    assert json.loads((tmp_path / "f" / "partition.json").read_text())["sizes"] == [4, 4, 4]
    shakespeare = tmp_path / "shakespeare"
    _shakespeare_tree(shakespeare)
    overrides = [f"dataset.root={shakespeare}", "num_clients=3", "clients_per_round=2", "model=char_lstm"]
    overrides += ["model.hidden=8", "model.embed=4", "algorithm.batch_size=2"]
    s = run_experiment(compose(*RUN, "dataset=shakespeare", *overrides), tmp_path / "s", callbacks=[])
    assert s["status"] == "completed", s["error"]
    assert s["partition"]["num_clients"] == 3 and s["final"]["num_selected"] == 2


def test_missing_leaf_folder_is_a_one_line_config_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        validate(compose("dataset=femnist", "partition=natural", f"dataset.root={tmp_path}"))
    assert str(e.value) == (
        f"dataset=femnist: no LEAF train/ folder in {tmp_path}; produce it with LEAF's "
        "data/femnist/preprocess.sh (docs/natural_clients.md) and set dataset.root"
    )
