from __future__ import annotations

import math
import sys
from typing import Any

from tqdm.auto import tqdm


class ProgressBar:
    """One bar per run: round and latest test accuracy. Quiet unless stderr is a terminal."""

    def __init__(self, rounds: int, enabled: bool = True):
        self.rounds = rounds
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None

    def on_start(self, sim: Any) -> None:
        if self.enabled:
            self.bar = tqdm(total=self.rounds, desc="rounds", unit="rnd", dynamic_ncols=True, leave=True)

    def on_round(self, sim: Any, metrics: dict[str, float]) -> None:
        if self.bar is None:
            return
        acc = metrics.get("test_acc", math.nan)
        if not math.isnan(acc):
            self.bar.set_postfix(acc=f"{acc:.4f}", loss=f"{metrics['train_loss']:.3f}", refresh=False)
        self.bar.update(1)

    def on_end(self, sim: Any, summary: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
