from __future__ import annotations

import math
from pathlib import Path
from typing import Any


class WandbLogger:
    """Logs the resolved config and every round's metrics to Weights & Biases.

    Works offline with ``WANDB_MODE=offline`` (or ``logger.mode=offline``): the run is stored
    under ``<run_dir>/wandb`` and can be uploaded later with ``wandb sync``.
    """

    def __init__(self, cfg: Any, run_dir: Path, resolved: dict[str, Any]):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            mode=cfg.mode,
            tags=list(cfg.tags) or None,
            config=resolved,
            dir=str(run_dir),
            name=Path(run_dir).name,
            reinit="finish_previous",
        )

    def on_start(self, sim: Any) -> None:
        self.run.summary["num_params"] = sim.layout.dim

    def on_round(self, sim: Any, metrics: dict[str, float]) -> None:
        row = {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}
        self.run.log(row, step=int(metrics["round"]))

    def on_end(self, sim: Any, summary: dict[str, Any]) -> None:
        self.run.summary["status"] = summary["status"]
        self.run.finish(exit_code=0 if summary["status"] != "failed" else 1)
