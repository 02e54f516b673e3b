"""A 12-run sweep under the joblib and submitit_local launchers, stopped with SIGTERM mid-way and
relaunched: the relaunch finishes only what was missing, and resumed runs end with the metrics of
uninterrupted ones. Real processes throughout (about a minute per launcher on 2 cores)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from fedbench.config import compose
from fedbench.outputs import WALL_CLOCK_COLUMNS, read_metrics_log
from fedbench.runner import run_experiment
from fedbench.threads import available_cpus

pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

RUN = ["num_clients=5", "clients_per_round=2", "partition=iid", "model=logreg", "progress=false"]
RUN += ["rounds=40", "checkpoint_every=4"]
SWEPT = ["seed=0,1,2,3,4,5", "algorithm.lr=0.05,0.1"]  # 12 runs
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": [
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.cpus_per_task=1",
    ],
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(WANDB_MODE="disabled", PYTHONWARNINGS="ignore")
    return env


def _summaries(sweep: Path) -> dict[Path, dict]:
    out = {}
    for p in sweep.glob("*/summary.json"):
        try:
            out[p.parent] = json.loads(p.read_text())
        except ValueError:  # being replaced right now
            pass
    return out


def _in_progress(sweep: Path) -> int:
    return sum(1 for log in sweep.glob("*/metrics.jsonl") if len(read_metrics_log(log)) >= 2)


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_sweep_stopped_with_sigterm_then_relaunched_finishes_only_what_was_missing(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "fedbench", "-m", *LAUNCHERS[launcher], *RUN, *SWEPT, f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    # wait until some runs are done (joblib) or under way with rounds logged (submitit starts all)
    want_done = 2 if launcher == "joblib" else 0
    while time.monotonic() < deadline:
        done = sum(s.get("status") == "completed" for s in _summaries(sweep).values())
        if done >= want_done and _in_progress(sweep) >= 1:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # to the fedbench process only: it tells every run through .stop
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    first = _summaries(sweep)
    statuses = [s["status"] for s in first.values()]
    assert statuses.count("interrupted") >= 1 and statuses.count("completed") < 12, statuses
    assert "running" not in statuses  # every started run ended with a truthful record
    assert all(s["signal"] == "SIGTERM" for s in first.values() if s["status"] == "interrupted")
    assert "Traceback" not in err

    again = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    final = _summaries(sweep)
    assert len(final) == 12 and all(s["status"] == "completed" for s in final.values())
    # the threads rule: joblib shares the cores among n_jobs=2 runs; submitit gives cpus_per_task=1
    threads = max(1, available_cpus() // 2) if launcher == "joblib" else 1
    assert {s["threads"] for s in final.values()} == {threads}, {s["threads_rule"] for s in final.values()}
    if launcher == "submitit_local":  # each run's output is in its own submitit log
        assert any("fedbench: completed after 40 rounds" in p.read_text() for p in sweep.glob(".submitit/*/*_log.out"))
    for d, s in first.items():
        if s["status"] == "completed":  # not paid twice
            assert final[d]["started_at"] == s["started_at"] and final[d]["resumed_from"] is None
        else:
            assert final[d]["resumed_from"] == s.get("checkpoint_round", 0) or final[d]["resumed_from"] is None
    resumed = [d for d, s in final.items() if s["resumed_from"]]
    assert resumed, "at least one run continued from its checkpoint"
    d = resumed[0]
    cfg = json.loads((d / "summary.json").read_text())
    overrides = [ln[2:] for ln in (d / ".hydra" / "overrides.yaml").read_text().splitlines() if ln.startswith("- ")]
    job_overrides = [o for o in overrides if not o.startswith("hydra")]
    whole = run_experiment(compose(*job_overrides), tmp_path / "whole", callbacks=[])
    assert whole["config_hash"] == cfg["config_hash"]
    drop = WALL_CLOCK_COLUMNS
    assert_frame_equal(
        pd.read_parquet(d / "metrics.parquet").drop(columns=drop),
        pd.read_parquet(tmp_path / "whole" / "metrics.parquet").drop(columns=drop),
    )
    assert f"sweep finished: 12 completed (run folders in {sweep})" in again.stdout
