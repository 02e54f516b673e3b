"""logger=wandb with a real, offline Weights & Biases run (no network)."""

from __future__ import annotations

import pandas as pd
import pytest

from fedbench.runner import run_experiment

wandb = pytest.importorskip("wandb")


def test_wandb_offline_logs_config_and_every_round(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logged = []
    real_log = wandb.Run.log

    def spy(self, data, *args, **kwargs):
        logged.append(dict(data))
        return real_log(self, data, *args, **kwargs)

    monkeypatch.setattr(wandb.Run, "log", spy)
    cfg = {
        "dataset": {"name": "digits"},
        "partition": {"name": "iid"},
        "model": {"name": "logreg"},
        "algorithm": {"name": "fedavg"},
        "server_opt": {"name": "sgd"},
        "engine": {"name": "auto"},
        "logger": {"name": "wandb", "project": "fedbench-test"},
        "rounds": 3,
        "num_clients": 5,
        "clients_per_round": 2,
        "progress": False,
    }
    summary = run_experiment(cfg, tmp_path / "run")
    assert summary["status"] == "completed", summary["error"]
    df = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert [row["round"] for row in logged] == [1, 2, 3]
    assert [row["test_acc"] for row in logged] == df["test_acc"].tolist()
    files = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    blob = files[0].read_bytes()
    assert b"test_acc" in blob and b"logreg" in blob, "metrics and config reach the offline run file"
