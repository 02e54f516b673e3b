"""The ``attack`` stage of the round: who is Byzantine, what they train on, what they send.

Byzantine identities are drawn once, from the ``byzantine`` stream, so they do not depend on the
attack, the aggregator or the sampling. Each round the selected Byzantine clients (the record's
``byzantine`` mask) train like everyone else (on poisoned data under a data-poisoning attack);
then, under a model-poisoning attack, their rows of ``record.updates`` are replaced by the
attack's output, computed from the round's honest updates (omniscient) or from their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fedbench.attack.options import AttackContext
from fedbench.attack.poison import TrainingView, backdoor_view, label_flip_view
from fedbench.rng import numpy_rng
from fedbench.round import RoundRecord


class AttackStage:
    def __init__(self, cfg: Any, num_clients: int, seed: int):
        self.cfg = cfg
        self.seed = seed
        self.kind: str = getattr(cfg, "kind", "none")
        count = cfg.count(num_clients)
        rng = numpy_rng(seed, "byzantine")
        self.byzantine = np.sort(rng.choice(num_clients, count, replace=False)).astype(np.int64)
        self._data_rng = rng  # after the identities: the backdoor's choice of poisoned samples

    @property
    def active(self) -> bool:
        """Whether any client is Byzantine (under ``attack=none`` they may be, and act honestly)."""
        return len(self.byzantine) > 0

    def mask(self, clients: np.ndarray) -> np.ndarray:
        """Which of ``clients`` are Byzantine, ``(n,)`` bool."""
        return np.isin(clients, self.byzantine)

    def training_view(
        self, x: torch.Tensor, y: torch.Tensor, parts: list[np.ndarray], num_classes: int
    ) -> TrainingView:
        """What the engines train on: the clean data, or the Byzantine clients' poisoned data."""
        cfg = self.cfg
        if self.kind == "labels":
            return label_flip_view(x, y, parts, self.byzantine, num_classes, cfg.target)
        if self.kind == "backdoor":
            return backdoor_view(
                x, y, parts, self.byzantine, cfg.target, cfg.trigger_size, cfg.poison_fraction, self._data_rng
            )
        return TrainingView(x, y, parts, 0)

    def __call__(self, record: RoundRecord, aggregator: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
        """Replace the selected Byzantine clients' updates; ``aggregator`` is the deployed rule
        (``(n, d) -> (d,)``), which adaptive attacks search against."""
        byz = record.byzantine
        count = int(byz.sum())
        metrics: dict[str, float] = {"byzantine_selected": count}
        if count == 0:
            return metrics
        rows = torch.as_tensor(np.flatnonzero(byz), device=record.updates.device)
        if self.kind == "backdoor" and self.cfg.boost != 1.0:
            record.updates[rows] = record.updates[rows] * self.cfg.boost
        if self.kind != "model":
            return metrics
        import fedbench.attack as attacks

        honest = record.updates[torch.as_tensor(np.flatnonzero(~byz), device=rows.device)]
        reference = honest if self.cfg.omniscient and len(honest) else record.updates[rows]
        ctx = AttackContext(record.round, record.n, reference, self.seed, aggregator)
        rows_out = getattr(attacks, self.cfg.name)(reference, f=count, **self.cfg.arguments(ctx))
        record.updates[rows] = rows_out.to(record.updates.dtype)
        return metrics
