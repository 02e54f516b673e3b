"""Round-loop callbacks: where metrics go besides ``metrics.parquet``.

``logger=none`` (default) keeps metrics local; ``logger=wandb`` also sends config and per-round
metrics to Weights & Biases. The progress bar is always a callback, shown only on a terminal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedbench.config import RunConfig
from fedbench.logger.progress import ProgressBar


def make_callbacks(run: RunConfig, run_dir: Path, resolved: dict[str, Any]) -> list[Any]:
    callbacks: list[Any] = [ProgressBar(run.rounds, enabled=run.progress)]
    if run.logger.name == "wandb":
        from fedbench.logger.wandb_logger import WandbLogger

        callbacks.append(WandbLogger(run.logger, run_dir, resolved))
    return callbacks


__all__ = ["ProgressBar", "make_callbacks"]
