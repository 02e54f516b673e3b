"""What a run does with the directory it is given: start, resume, skip, or move older outputs aside.

A run is identified by its config hash (:func:`fedbench.outputs.config_hash`), not by its folder:

- no earlier run here: start;
- an earlier run of the same config that ended ``completed`` or ``diverged`` (a deterministic
  outcome; running it again would cost the same and give the same): skip;
- an earlier run of the same config that did not end (``interrupted``, ``failed``, ``stale``:
  killed, or its machine went down): resume from its ``checkpoint.pt``, or start again when it
  has none;
- an earlier run of another config, or ``rerun=true``: its outputs move to
  ``.previous/<n>/`` inside the folder (readers skip dot-folders), then start;
- the same folder held by a live process on this machine: refuse.

In a sweep, :func:`find_same_run` looks for the config among the sweep's other run folders, so
a relaunched sweep whose job numbers moved still finds its finished runs.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from socket import gethostname
from typing import Any

from fedbench.checkpoint import CHECKPOINT
from fedbench.outputs import METRICS_LOG, run_status

# What a run writes; anything else in the folder (Hydra's .hydra/, its log file) is left alone.
OUTPUTS = (
    "config.yaml",
    "summary.json",
    "metrics.parquet",
    METRICS_LOG,
    "partition.json",
    "client_acc.csv",
    "curves.png",
    CHECKPOINT,
    "wandb",
)
PREVIOUS = ".previous"
STOP_FILE = ".stop"  # in a sweep folder: a signal asked every run of the sweep to stop
DONE = ("completed", "diverged")


class RunDirError(Exception):
    """The folder cannot be used for this run (another live run holds it)."""


@dataclass
class Claim:
    action: str  # "start" | "resume" | "skip"
    previous: dict[str, Any] | None = None  # the earlier run's summary (resume, skip)
    moved_to: Path | None = None  # where an older run's outputs went


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The folder's ``summary.json``; ``{}`` when it exists but is not readable JSON."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def move_aside(run_dir: Path) -> Path | None:
    """Move the run outputs in ``run_dir`` to ``run_dir/.previous/<n>/``; returns it (None if
    there was nothing to move)."""
    present = [run_dir / name for name in OUTPUTS if (run_dir / name).exists()]
    present += [p for p in run_dir.glob(".*.tmp*") if p.is_file()]  # temp files of a killed write
    if not present:
        return None
    root = run_dir / PREVIOUS
    root.mkdir(exist_ok=True)
    n = 1 + max((int(p.name) for p in root.iterdir() if p.name.isdigit()), default=0)
    dest = root / str(n)
    dest.mkdir()
    for p in present:
        shutil.move(str(p), str(dest / p.name))
    return dest


def claim(run_dir: Path, config_hash: str, rerun: bool = False) -> Claim:
    """Decide what a run of the config with ``config_hash`` does in ``run_dir`` (see module doc)."""
    run_dir = Path(run_dir)
    previous = read_summary(run_dir)
    if previous is None:
        return Claim("start", moved_to=move_aside(run_dir))
    status = run_status(previous)
    # run_status says "running" on this host only for a live process; on another host it cannot tell
    if status == "running" and previous.get("host") == gethostname() and previous.get("pid") != os.getpid():
        raise RunDirError(
            f"{run_dir} is in use by a running fedbench (pid {previous['pid']}); wait for it to end, "
            "or choose another hydra.run.dir"
        )
    if rerun or previous.get("config_hash") != config_hash:
        return Claim("start", moved_to=move_aside(run_dir))
    if status in DONE:
        return Claim("skip", previous=previous)
    if (run_dir / CHECKPOINT).exists():
        return Claim("resume", previous=previous)
    return Claim("start", previous=previous, moved_to=move_aside(run_dir))


def find_same_run(sweep_dir: Path, config_hash: str, exclude: Path) -> Path | None:
    """Another run folder directly under ``sweep_dir`` holding a run of the same config: a
    finished one first, else the one that got furthest."""
    best: tuple[int, int, Path] | None = None
    for summary_path in Path(sweep_dir).glob("*/summary.json"):
        d = summary_path.parent
        if d.resolve() == Path(exclude).resolve():
            continue
        s = read_summary(d)
        if not s or s.get("config_hash") != config_hash:
            continue
        key = (run_status(s) in DONE, int(s.get("rounds_completed") or 0), d)
        if best is None or key[:2] > best[:2]:
            best = key
    return None if best is None else best[2]


def only_hydra_files(run_dir: Path) -> bool:
    """True when ``run_dir`` holds nothing but what Hydra writes before a job starts."""
    return all(p.name == ".hydra" or p.suffix == ".log" for p in Path(run_dir).iterdir())
