"""The ``aggregate`` stage's rule: pre-aggregation, the configured rule, its state, and which
clients it rejected.

The pure functions of :mod:`fedbench.aggregator` hold the math; this wraps them for the round:
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
from fedbench.rng import torch_generator


class Aggregation(NamedTuple):
    value: torch.Tensor  # (d,)
    flagged: torch.Tensor | None  # (n,) bool: rejected or down-weighted clients; None: no notion, or rows mixed


class AggregatorStage:
    def __init__(self, cfg: Any, f: int, seed: int, dim: int, device: torch.device):
        self.cfg = cfg
        self.f = f
        self.seed = seed
        self.name = cfg.name
        # centred clipping starts from zero (no previous aggregate), as Karimireddy et al. do
        self.center = torch.zeros(dim, device=device) if self.name == "cclip" else None

    @property
    def needs_root(self) -> bool:
        return self.name == "fltrust"

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
        cfg, f = self.cfg, self.f
        same_rows = True
        for p in cfg.pre:
            if p == "bucketing":
                gen = torch_generator(self.seed, "aggregator", round_, 0, device=u.device)
                u = agg.bucketing(u, s=cfg.bucket_size, generator=gen)
                w = torch.ones(len(u), dtype=u.dtype, device=u.device)
                same_rows = False
            elif p == "nnm":
                u = agg.nnm(u, f=f)
            elif p == "clip":
                u = agg.clip(u, tau=cfg.clip_tau)
            elif p == "arc":
                u = agg.arc(u, f=f)
        value, flagged = self._rule(u, w, round_, root)
        return Aggregation(value, flagged if same_rows else None)

    def _rule(self, u: torch.Tensor, w: torch.Tensor, round_: int, root: torch.Tensor | None):
        cfg, f, name, n = self.cfg, self.f, self.name, len(u)
        if name == "mean":
            return agg.weighted_mean(u, w), None
        if name in ("krum", "multikrum", "mda", "dnc"):
            if name == "krum":
                chosen = agg.multikrum_select(u, f=f, m=1)
            elif name == "multikrum":
                chosen = agg.multikrum_select(u, f=f, m=cfg.m)
            elif name == "mda":
                chosen = agg.mda_select(u, f=f)
            else:
                gen = torch_generator(self.seed, "aggregator", round_, 1, device=u.device)
                chosen = agg.dnc_select(
                    u, f=f, generator=gen, iterations=cfg.iterations, sub_dim=cfg.sub_dim, filter_frac=cfg.filter_frac
                )
            return u[chosen].mean(0), _complement(chosen, n, u.device)
        if name == "bulyan":
            return agg.bulyan(u, f=f), _complement(agg.bulyan_select(u, f=f), n, u.device)
        if name == "cclip":
            flagged = _norms(u - self.center) > cfg.tau
            return agg.cclip(u, tau=cfg.tau, iterations=cfg.iterations, center=self.center), flagged
        if name == "norm_bound":
            return agg.norm_bound(u, tau=cfg.tau, weights=w), _norms(u) > cfg.tau
        if name == "fltrust":
            return agg.fltrust(u, root=root), agg.fltrust_scores(u, root) <= 0
        if name == "geomed":
            return agg.geomed(u, weights=w, nu=cfg.nu, max_iter=cfg.max_iter, tol=cfg.tol), None
        if name in ("trimmed_mean", "meamed"):
            return getattr(agg, name)(u, f=f), None
        return getattr(agg, name)(u), None

    def state_dict(self) -> dict[str, Any]:
        return {} if self.center is None else {"center": self.center}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.center is not None and "center" in state:
            self.center = state["center"].to(self.center.device)


def _norms(u: torch.Tensor) -> torch.Tensor:
    """Row norms, +inf for rows with a non-finite entry (they are as far as can be)."""
    finite = torch.isfinite(u).all(dim=1)
    return torch.where(finite, torch.nan_to_num(u).norm(dim=1), torch.full_like(u[:, 0], math.inf))


def _complement(chosen: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    flagged = torch.ones(n, dtype=torch.bool, device=device)
    flagged[chosen] = False
    return flagged


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
