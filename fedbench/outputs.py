"""Run outputs, written atomically (temp file in the same directory, then ``os.replace``), so an
interrupted run never leaves a file that looks complete.

Per run directory:

- ``metrics.parquet``: one row per round (schema in README, "Output schema"); rewritten after
  every round so a crashed run keeps its history.
- ``summary.json``: status (``running`` / ``completed`` / ``diverged`` / ``failed``), final and
  best metrics, seed, config hash, versions, git commit, wall time, error.
- ``config.yaml``: the resolved configuration.
- ``partition.json``: partition statistics (client sizes, per-client label histogram).
- ``curves.png``: accuracy and loss curves.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

METRIC_COLUMNS = [
    "round",
    "num_selected",
    "train_loss",
    "test_acc",
    "test_loss",
    "client_acc_mean",
    "client_acc_std",
    "client_acc_p10",
    "client_acc_min",
    "uplink_bytes",
    "downlink_bytes",
    "uplink_bytes_cum",
    "downlink_bytes_cum",
    "train_time_s",
    "eval_time_s",
    "wall_time_s",
]
WALL_CLOCK_COLUMNS = ["train_time_s", "eval_time_s", "wall_time_s"]
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def metrics_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The per-round table with the documented columns, in order; extra columns (from later
    pipeline stages) follow, sorted by name."""
    df = pd.DataFrame(rows)
    extra = sorted(c for c in df.columns if c not in METRIC_COLUMNS)
    df = df.reindex(columns=METRIC_COLUMNS + extra)
    int_cols = ["round", "num_selected", "uplink_bytes", "downlink_bytes", "uplink_bytes_cum", "downlink_bytes_cum"]
    df[int_cols] = df[int_cols].astype("int64")
    float_cols = [c for c in df.columns if c not in int_cols]
    df[float_cols] = df[float_cols].astype("float64")
    return df


def atomic_write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    return pd.read_parquet(Path(run_dir) / "metrics.parquet")


def load_runs(root: str | Path) -> pd.DataFrame:
    """Every run under ``root`` as one tidy frame: one row per (run, round), the metrics columns,
    then ``run_dir``, ``status`` and the resolved config flattened to dotted columns
    (``partition.alpha``, ``seed``...; lists become strings)."""
    import yaml

    frames = []
    for metrics in sorted(Path(root).rglob("metrics.parquet")):
        run_dir = metrics.parent
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        flat = pd.json_normalize(cfg, sep=".").iloc[0].to_dict()
        flat = {k: str(v) if isinstance(v, list) else v for k, v in flat.items()}
        status = json.loads((run_dir / "summary.json").read_text())["status"]
        frames.append(pd.read_parquet(metrics).assign(run_dir=str(run_dir), status=status, **flat))
    if not frames:
        raise FileNotFoundError(f"no metrics.parquet under {root}")
    return pd.concat(frames, ignore_index=True)


def config_hash(resolved: dict[str, Any]) -> str:
    """sha256 of the resolved config as canonical JSON (sorted keys), leaving out the keys that
    cannot change results (``progress``, ``logger``), so equal experiments hash equal."""
    resolved = {k: v for k, v in resolved.items() if k not in ("progress", "logger")}
    blob = json.dumps(resolved, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def versions() -> dict[str, str]:
    import hydra
    import numpy
    import omegaconf
    import torch

    from fedbench import __version__

    return {
        "fedbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "hydra": hydra.__version__,
        "omegaconf": omegaconf.__version__,
    }


def git_commit() -> str | None:
    """The commit of the fedbench checkout, when it is one (editable installs), else None."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("-dirty" if dirty else "")
