"""The ``aggregate`` stage's rule: pre-aggregation, the configured rule, its state, and which
clients it rejected.

The pure functions of :mod:`fedbench.aggregator` hold the math and each option's ``apply``
(:mod:`fedbench.aggregator.options`) how the round calls it; this stage runs them:
sample weights (used by ``mean``, ``norm_bound`` and ``geomed``; the other robust rules weigh
every row equally, as their papers do, since a Byzantine client can lie about its sample count),
the server's randomness (the ``aggregator`` stream keyed by round), centred clipping's centre
(the previous aggregate, checkpointed), FLTrust's root update, and a per-client ``flagged`` mask
for the detection metrics.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

import fedbench.aggregator as agg
from fedbench.aggregator.options import RuleContext
from fedbench.rng import torch_generator


class Aggregation(NamedTuple):
    value: torch.Tensor  # (d,)
    flagged: torch.Tensor | None  # (n,) bool: rejected or down-weighted clients; None: no notion, or rows mixed


class AggregatorStage:
    """``vote`` (signSGD's majority, from the uplink codec) replaces the rule when given."""

    def __init__(self, cfg: Any, f: int, seed: int, dim: int, device: torch.device, vote: Any = None):
        self.cfg = cfg
        self.f = f
        self.seed = seed
        self.vote = vote
        # centred clipping starts from zero (no previous aggregate), as Karimireddy et al. do
        self.center = torch.zeros(dim, device=device) if cfg.keeps_center else None

    @property
    def needs_root(self) -> bool:
        return self.cfg.needs_root

    def __call__(
        self, updates: torch.Tensor, weights: torch.Tensor, round_: int, root: torch.Tensor | None = None
    ) -> Aggregation:
        """The round's aggregate; updates the rule's state (cclip's centre)."""
        out = self._aggregate(updates, weights, round_, root)
        if self.center is not None:
            self.center = out.value.detach().clone()
        return out

    def rule(self, round_: int, root: torch.Tensor | None = None):
        """The deployed rule as ``(n, d) -> (d,)`` with equal weights and without changing state
        (what an adaptive attacker searches against)."""

        def apply(updates: torch.Tensor) -> torch.Tensor:
            ones = torch.ones(len(updates), dtype=updates.dtype, device=updates.device)
            return self._aggregate(updates, ones, round_, root).value

        return apply

    def _aggregate(self, u: torch.Tensor, w: torch.Tensor, round_: int, root: torch.Tensor | None) -> Aggregation:
        if self.vote is not None:
            return Aggregation(self.vote(u), None)
        cfg, f = self.cfg, self.f

        def generator(key: int):
            return lambda: torch_generator(self.seed, "aggregator", round_, key, device=u.device)

        same_rows = True
        for p in cfg.pre:
            if p == "bucketing":
                u = agg.bucketing(u, s=cfg.bucket_size, generator=generator(0)())
                w = torch.ones(len(u), dtype=u.dtype, device=u.device)
                same_rows = False
            elif p == "nnm":
                u = agg.nnm(u, f=f)
            elif p == "clip":
                u = agg.clip(u, tau=cfg.clip_tau)
            elif p == "arc":
                u = agg.arc(u, f=f)
        value, flagged = cfg.apply(u, w, RuleContext(f, generator(1), self.center, root))
        return Aggregation(value, flagged if same_rows else None)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.center is None else {"center": self.center}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.center is not None and "center" in state:
            self.center = state["center"].to(self.center.device)


def detection(flagged: torch.Tensor, byzantine: torch.Tensor) -> dict[str, float]:
    """Precision and recall of the flagged clients against the true Byzantine ones:
    ``precision = |flagged & byz| / |flagged|`` (NaN when nobody is flagged), ``recall =
    |flagged & byz| / |byz|`` (NaN when no Byzantine client was selected)."""
    hits = int((flagged & byzantine).sum())
    nf, nb = int(flagged.sum()), int(byzantine.sum())
    return {
        "detect_precision": hits / nf if nf else math.nan,
        "detect_recall": hits / nb if nb else math.nan,
        "flagged": nf,
    }
