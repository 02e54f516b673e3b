"""Checkpoints: everything a run needs to continue from the end of a round.

A checkpoint is one file, ``checkpoint.pt`` in the run directory, written atomically (temp file
then ``os.replace``), holding only tensors, numbers, strings, lists and dicts, so it is read back
with ``torch.load(weights_only=True)`` and never unpickles arbitrary objects::

    {"format": "fedbench-checkpoint", "version": 1, "config_hash": <sha256 of the config>,
     "round": r, "sim": Simulation.state_dict()}

``sim`` holds the global model, the server optimizer's state, the algorithm's server state, the
per-client state store, the engine's trace counters and the byte totals. RNG streams have no
position to save: every stream is keyed by (seed, round[, client]) (:mod:`fedbench.rng`), so
round ``r + 1`` draws the same numbers whether or not the run stopped after round ``r``. The
metrics of rounds ``1..r`` are the first ``r`` rows of the run's ``metrics.jsonl``, which is
flushed to disk before the checkpoint is written.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from fedbench.outputs import atomic_write_bytes

FORMAT = "fedbench-checkpoint"
VERSION = 1
CHECKPOINT = "checkpoint.pt"


class CheckpointError(Exception):
    """A checkpoint that cannot be used: unreadable, not fedbench's, or of another config."""


def save_checkpoint(path: str | Path, state: dict[str, Any], config_hash: str) -> None:
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config_hash": config_hash,
        "round": int(state["round"]),
        "sim": state,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, config_hash: str) -> dict[str, Any]:
    """The checkpoint at ``path`` for the config with ``config_hash``, or :class:`CheckpointError`
    with one line saying what is wrong with it."""
    path = Path(path)
    hint = "move it away, or set rerun=true to start the run again"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  any unreadable file is the same user-facing problem
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first}); {hint}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fedbench checkpoint; {hint}")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('version')!r}, expected {VERSION}; {hint}"
        )
    if payload.get("config_hash") != config_hash:
        raise CheckpointError(
            f"{path}: checkpoint of another config (hash {str(payload.get('config_hash'))[:12]}); {hint}"
        )
    return payload
