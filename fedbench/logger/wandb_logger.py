from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any


class WandbLogger:
    """Logs the resolved config and every round's metrics to Weights & Biases.

    Works offline with ``WANDB_MODE=offline`` (or ``logger.mode=offline``): the run is stored
    under ``<run_dir>/wandb`` and can be uploaded later with ``wandb sync``.

    - Runs of one sweep share a group: ``logger.group``, or the sweep folder's name.
    - The swept ``key=value`` pairs of a run become its tags (after ``logger.tags``).
    - The wandb run id is kept in ``summary.json`` (``wandb_id``): a resumed run continues the
      same wandb run (``resume="allow"``), logging from the round after its checkpoint.
    """

    def __init__(
        self,
        cfg: Any,
        run_dir: Path,
        resolved: dict[str, Any],
        summary: dict[str, Any] | None = None,
        job: dict[str, Any] | None = None,
    ):
        import wandb

        self.wandb = wandb
        summary = summary if summary is not None else {}
        job = job or {}
        run_id = summary.get("wandb_id") or uuid.uuid4().hex[:12]
        summary["wandb_id"] = run_id
        group = cfg.group or (Path(job["sweep_dir"]).name if job.get("sweep_dir") else None)
        tags = list(cfg.tags) + [t[:64] for t in job.get("varying", [])]  # wandb caps tags at 64 characters
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            mode=cfg.mode,
            group=group,
            tags=tags or None,
            config=resolved,
            dir=str(run_dir),
            name=Path(run_dir).name,
            id=run_id,
            resume="allow",
            reinit="finish_previous",
        )

    def on_start(self, sim: Any) -> None:
        self.run.summary["num_params"] = sim.layout.dim

    def on_round(self, sim: Any, metrics: dict[str, float]) -> None:
        row = {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}
        self.run.log(row, step=int(metrics["round"]))

    def on_end(self, sim: Any, summary: dict[str, Any]) -> None:
        for key in ("status", "rounds_completed", "resumed_from", "error"):
            self.run.summary[key] = summary.get(key)
        for key, value in (summary.get("final") or {}).items():
            self.run.summary[f"final/{key}"] = value
        self.run.finish(exit_code=0 if summary["status"] in ("completed", "diverged") else 1)
