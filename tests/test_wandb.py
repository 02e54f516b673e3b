"""logger=wandb with a real, offline Weights & Biases run (no network)."""

from __future__ import annotations

import pandas as pd
import pytest

from fedbench.runner import run_experiment

wandb = pytest.importorskip("wandb")


def tiny_wandb_config(rounds: int) -> dict:
    return {
        "dataset": {"name": "digits"},
        "partition": {"name": "iid"},
        "model": {"name": "logreg"},
        "algorithm": {"name": "fedavg"},
        "server_opt": {"name": "sgd"},
        "engine": {"name": "auto"},
        "logger": {"name": "wandb", "project": "fedbench-test"},
        "rounds": rounds,
        "num_clients": 5,
        "clients_per_round": 2,
        "progress": False,
    }


def test_wandb_offline_logs_config_and_every_round(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logged = []
    real_log = wandb.Run.log

    def spy(self, data, *args, **kwargs):
        logged.append(dict(data))
        return real_log(self, data, *args, **kwargs)

    monkeypatch.setattr(wandb.Run, "log", spy)
    cfg = tiny_wandb_config(rounds=3)
    summary = run_experiment(cfg, tmp_path / "run")
    assert summary["status"] == "completed", summary["error"]
    df = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert [row["round"] for row in logged] == [1, 2, 3]
    assert [row["test_acc"] for row in logged] == df["test_acc"].tolist()
    files = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    blob = files[0].read_bytes()
    assert b"test_acc" in blob and b"logreg" in blob, "metrics and config reach the offline run file"


def test_sweep_group_tags_and_a_resumed_run_continues_the_same_wandb_run(tmp_path, monkeypatch):
    import os
    import signal

    from fedbench.simulation import Simulation

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    inits, logged = [], []
    real_init, real_log = wandb.init, wandb.Run.log

    def spy_init(*args, **kwargs):
        inits.append(kwargs)
        return real_init(*args, **kwargs)

    def spy_log(self, data, *args, **kwargs):
        logged.append(int(data["round"]))
        return real_log(self, data, *args, **kwargs)

    monkeypatch.setattr(wandb, "init", spy_init)
    monkeypatch.setattr(wandb.Run, "log", spy_log)
    real_step = Simulation.step

    def step_then_sigterm_at_2(self):
        row = real_step(self)
        if row["round"] == 2 and len(inits) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # handled as a stop request after this round
        return row

    monkeypatch.setattr(Simulation, "step", step_then_sigterm_at_2)
    cfg = tiny_wandb_config(rounds=4)
    job = {"sweep_dir": str(tmp_path / "alpha-sweep"), "varying": ["seed=0", "partition.alpha=0.1"]}
    run_dir = tmp_path / "alpha-sweep" / "0_seed=0"
    first = run_experiment(cfg, run_dir, job=job)
    assert first["status"] == "interrupted" and logged == [1, 2]
    (tmp_path / "alpha-sweep" / ".stop").unlink()  # the signal stopped the whole sweep; a relaunch clears it
    second = run_experiment(cfg, run_dir, job=job)
    assert second["status"] == "completed" and second["resumed_from"] == 2
    assert logged == [1, 2, 3, 4]  # the resumed run logs only the rounds after its checkpoint
    assert inits[0]["id"] == inits[1]["id"] == first["wandb_id"] == second["wandb_id"]
    assert all(i["resume"] == "allow" and i["group"] == "alpha-sweep" for i in inits)
    assert inits[0]["tags"] == ["seed=0", "partition.alpha=0.1"]
