"""Run outputs, written atomically (temp file in the same directory, then ``os.replace``), so an
interrupted run never leaves a file that looks complete.

Per run directory:

- ``metrics.jsonl``: one JSON line per round, appended as the round ends (:class:`MetricsLog`),
  so a crashed or killed run keeps its history at a constant cost per round.
- ``metrics.parquet``: the same rows (schema in README, "Output schema"), written when the run
  ends; the log is then removed. :func:`load_metrics` reads whichever is current.
- ``summary.json``: status (``running`` / ``completed`` / ``diverged`` / ``failed`` /
  ``interrupted``; :func:`run_status` adds ``stale``), final and best metrics, seed, config hash,
  resume record, versions, git commit, wall time, error.
- ``checkpoint.pt``: see :mod:`fedbench.checkpoint`.
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
import socket
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
METRICS_LOG = "metrics.jsonl"
WALL_CLOCK_COLUMNS = ["train_time_s", "eval_time_s", "wall_time_s", "aggregate_time_s"]
_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteError(OSError):
    """A run output could not be written (disk full, file too large, read-only, permissions)."""

    def __init__(self, path: str | Path, err: OSError):
        super().__init__(err.errno, f"could not write {path}: {err.strerror or err}")
        self.path = Path(path)

    def __str__(self) -> str:
        return self.strerror


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``; an
    OSError becomes :class:`WriteError` naming the path, and the old file (if any) stays."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(path, e) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def metrics_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The per-round table with the documented columns, in order; extra columns (from later
    pipeline stages) follow, sorted by name."""
    df = pd.DataFrame(rows, columns=None if rows else METRIC_COLUMNS)
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


def read_metrics_log(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` (one JSON object per round, appended as rounds end). A
    last line torn by a kill is left out."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if hasattr(v, "item"):  # numpy / torch scalars
        return v.item()
    raise TypeError(f"metric value {v!r} is not a number")


class MetricsLog:
    """``metrics.jsonl``: one JSON line per round, appended as the round ends, so writing a round
    costs the same at round 3 and at round 3,000 (``metrics.parquet`` is written once, when the
    run ends). Floats are written with ``repr``, so they read back bit for bit. ``sync()`` forces
    the lines to disk (before a checkpoint that counts on them)."""

    def __init__(self, path: str | Path, rows: list[dict[str, Any]] = ()):
        self.path = Path(path)
        atomic_write_text(self.path, "".join(self._line(r) for r in rows))
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  closed by close()

    @staticmethod
    def _line(row: dict[str, Any]) -> str:
        return json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n"

    def append(self, row: dict[str, Any]) -> None:
        try:
            self._f.write(self._line(row))
            self._f.flush()
        except OSError as e:
            raise WriteError(self.path, e) from None

    def sync(self) -> None:
        try:
            os.fsync(self._f.fileno())
        except OSError as e:
            raise WriteError(self.path, e) from None

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:
            pass  # a failed flush was already reported by append()


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """A run's per-round metrics: ``metrics.jsonl`` while the run has not ended cleanly (running,
    killed, or interrupted before its final write), else ``metrics.parquet``. Empty frame (the
    documented columns, no rows) when the run has no rounds."""
    run_dir = Path(run_dir)
    log = run_dir / METRICS_LOG
    if log.exists():
        return metrics_frame(read_metrics_log(log))
    if (run_dir / "metrics.parquet").exists():
        return pd.read_parquet(run_dir / "metrics.parquet")
    return metrics_frame([])


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def run_status(summary: dict[str, Any]) -> str:
    """The status a reader should report: ``summary["status"]``, except that a run still marked
    ``running`` whose process (``pid`` on ``host``, this machine) is gone is ``stale`` (killed
    with SIGKILL, or the machine went down). A ``running`` run on another host cannot be checked
    from here and stays ``running``."""
    status = summary.get("status", "unknown")
    if status != "running":
        return status
    pid, host = summary.get("pid"), summary.get("host")
    if pid is None or host != socket.gethostname():
        return status
    return "running" if process_alive(int(pid)) else "stale"


def load_runs(root: str | Path) -> pd.DataFrame:
    """Every run under ``root`` as one tidy frame; see :func:`fedbench.analysis.load_runs`."""
    from fedbench.analysis import load_runs as _load_runs

    return _load_runs(root)


# Keys that cannot change a run's results, left out of its identity.
UNHASHED_KEYS = ("progress", "logger", "rerun", "checkpoint_every")


def config_hash(resolved: dict[str, Any]) -> str:
    """sha256 of the resolved config as canonical JSON (sorted keys), leaving out the keys that
    cannot change results (:data:`UNHASHED_KEYS`), so equal experiments hash equal."""
    resolved = {k: v for k, v in resolved.items() if k not in UNHASHED_KEYS}
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
