"""Run directories written by hand (config.yaml, summary.json, metrics.parquet with known values),
for the analysis, report and plot tests."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from fedbench.outputs import atomic_write_json, atomic_write_parquet, metrics_frame

UPLINK_PER_ROUND = 1000  # bytes per round, so uplink_bytes_cum = 1000 * round


def base_config(**over: Any) -> dict[str, Any]:
    """A nested config like a resolved fedbench one; ``over`` sets dotted keys."""
    cfg: dict[str, Any] = {
        "dataset": {"name": "digits", "test_fraction": 0.2},
        "partition": {"name": "dirichlet_class", "alpha": 0.5},
        "model": {"name": "mlp", "hidden": [32, 16]},
        "algorithm": {"name": "fedavg", "lr": 0.05},
        "logger": {"name": "none"},
        "seed": 0,
        "rounds": 4,
        "device": "auto",
        "threads": 0,
        "progress": False,
    }
    return set_keys(cfg, over)


def set_keys(cfg: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with each dotted key of ``over`` (``"partition.alpha"``) set, in place."""
    for key, value in over.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


def metric_rows(acc: list[float | None], loss: list[float | None] | None = None) -> list[dict[str, Any]]:
    """One row per round; ``acc[r-1]`` is round r's test_acc (None: not evaluated that round)."""
    rows = []
    for r, a in enumerate(acc, start=1):
        row = {"round": r, "num_selected": 2, "train_loss": 1.0 / r, "uplink_bytes": UPLINK_PER_ROUND}
        row |= {"downlink_bytes": 500, "uplink_bytes_cum": UPLINK_PER_ROUND * r, "downlink_bytes_cum": 500 * r}
        row |= {"train_time_s": 0.1, "wall_time_s": 0.1 * r}
        if a is not None:
            lo = loss[r - 1] if loss is not None else 1.0 - a
            row |= {"test_acc": a, "test_loss": lo, "eval_time_s": 0.01}
        rows.append(row)
    return rows


def dead_pid() -> int:
    """The pid of a subprocess that has already exited (a run killed with SIGKILL looks like this)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_run(
    run_dir: Path,
    config: dict[str, Any] | None,
    status: str = "completed",
    acc: list[float | None] | None = None,
    loss: list[float | None] | None = None,
    pid: int | None = None,
    jsonl: bool = False,
    **summary: Any,
) -> Path:
    """A run directory: ``config.yaml`` (left out when ``config`` is None), ``summary.json`` and,
    when ``acc`` is given, the metric rows (``metrics.parquet``, or ``metrics.jsonl`` as a live run
    writes them)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    rows = metric_rows(acc, loss) if acc else []
    if rows and jsonl:
        clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in clean))
    elif rows:
        atomic_write_parquet(run_dir / "metrics.parquet", metrics_frame(rows))
    body = {
        "status": status,
        "error": None,
        "seed": (config or {}).get("seed", summary.pop("seed", None)),
        "config_hash": f"hash-{run_dir.name}",
        "rounds_completed": len(rows),
        "partition": {"num_clients": 5, "size_mean": 10.0, "mean_label_entropy": 1.5},
    } | summary
    if pid is not None:
        body |= {"pid": pid, "host": socket.gethostname()}
    atomic_write_json(run_dir / "summary.json", body)
    return run_dir
