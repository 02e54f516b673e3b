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
    group: str | None = None  # null: the sweep folder's name in a sweep, no group for a single run


def make_callbacks(
    run: RunConfig,
    run_dir: Path,
    resolved: dict[str, Any],
    summary: dict[str, Any] | None = None,
    job: dict[str, Any] | None = None,
) -> list[Any]:
    """The progress bar and the configured logger. ``summary`` is the run's summary dict (the
    logger records its run id there, so a resumed run continues the same logger run); ``job`` the
    Hydra job (``sweep_dir``, ``varying``: the swept ``key=value`` of this job)."""
    callbacks: list[Any] = [ProgressBar(run.rounds, enabled=run.progress)]
    if run.logger.name == "wandb":
        from fedbench.logger.wandb_logger import WandbLogger

        callbacks.append(WandbLogger(run.logger, run_dir, resolved, summary, job))
    return callbacks


__all__ = ["LoggerConfig", "NoLoggerConfig", "ProgressBar", "make_callbacks"]
