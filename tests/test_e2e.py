"""The default experiment, end to end through the command line, with its outputs checked."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import yaml

from fedbench.outputs import METRIC_COLUMNS


def test_default_experiment_end_to_end(tmp_path):
    run_dir = tmp_path / "default"
    proc = subprocess.run(
        [sys.executable, "-m", "fedbench", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["error"] is None
    assert summary["rounds_completed"] == 100 and summary["engine"] == "vmap"

    df = pd.read_parquet(run_dir / "metrics.parquet")
    assert list(df.columns[: len(METRIC_COLUMNS)]) == METRIC_COLUMNS
    assert df["round"].tolist() == list(range(1, 101))
    assert df["test_acc"].notna().all(), "eval_every=1 evaluates every round"
    # Band from real runs of the default config (seed 0): 0.964 final test accuracy on the
    # 360 held-out digits after 100 rounds; chance is 0.1.
    final = df.iloc[-1]
    assert 0.93 <= final["test_acc"] <= 1.0
    assert df["test_acc"].iloc[:5].mean() < final["test_acc"] - 0.2, "accuracy must improve over training"
    assert df["train_loss"].iloc[-10:].mean() < df["train_loss"].iloc[:10].mean()
    assert (df["client_acc_min"] <= df["client_acc_p10"]).all() and (
        df["client_acc_p10"] <= df["client_acc_mean"]
    ).all()
    assert summary["final"]["test_acc"] == final["test_acc"]
    assert summary["best"]["test_acc"] == df["test_acc"].max()
    per_round = 10 * summary["num_params"] * 4
    assert (df["uplink_bytes"] == per_round).all() and df["uplink_bytes_cum"].iloc[-1] == 100 * per_round

    part = json.loads((run_dir / "partition.json").read_text())
    assert sum(part["sizes"]) == 1437 and len(part["label_hist"]) == 20
    assert [sum(h) for h in part["label_hist"]] == part["sizes"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["partition"]["name"] == "dirichlet_class" and config["rounds"] == 100
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
