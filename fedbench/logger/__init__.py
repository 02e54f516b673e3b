"""Round-loop callbacks: where metrics go besides ``metrics.parquet``.

``logger=none`` (default) keeps metrics local; ``logger=wandb`` also sends config and per-round
metrics to Weights & Biases. The progress bar is always a callback, shown only on a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedbench.logger.progress import ProgressBar
from fedbench.registry import one_of, option, register

if TYPE_CHECKING:
    from fedbench.config import RunConfig


@register("logger", "none")
@dataclass
class NoLoggerConfig:
    name: str = "none"


@register("logger", "wandb")
@dataclass
class LoggerConfig:
    name: str = "wandb"
    project: str = "fedbench"
    entity: str | None = None
    mode: str | None = option(None, one_of(None, "online", "offline", "disabled"))
    tags: list[str] = option([])


def make_callbacks(run: RunConfig, run_dir: Path, resolved: dict[str, Any]) -> list[Any]:
    callbacks: list[Any] = [ProgressBar(run.rounds, enabled=run.progress)]
    if run.logger.name == "wandb":
        from fedbench.logger.wandb_logger import WandbLogger

        callbacks.append(WandbLogger(run.logger, run_dir, resolved))
    return callbacks


__all__ = ["LoggerConfig", "NoLoggerConfig", "ProgressBar", "make_callbacks"]
