"""The ``aggregator`` config group: the server's aggregation rule and its pre-aggregation.

``aggregator=mean`` (default, FedAvg's sample-weighted mean) or a robust rule; every option has
``f`` (the number of Byzantine clients the rule assumes per round; null: the expected number among
the sampled clients, ``ceil(attack's Byzantine count * clients_per_round / num_clients)``) and
``pre``, a list of pre-aggregation steps applied in order before the rule (``bucketing`` with
``bucket_size``, ``nnm``, ``clip`` with ``clip_tau``, ``arc``). A rule that cannot run at the
round's number of rows (``clients_per_round``, or the bucket count after bucketing) is a config
error before training. The math lives in the pure functions ``fedbench.aggregator.<name>``; each
option's ``apply`` says how the round calls it (weights, state, the rows it rejected), and its
``needs`` which n it can run at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch

import fedbench.aggregator as agg
from fedbench.registry import integer, number, option, register

PRE = ("bucketing", "nnm", "clip", "arc")
MDA_MAX_SUBSETS = agg.MDA_MAX_SUBSETS


def _pre_ok(v: Any) -> bool:
    return isinstance(v, list) and all(p in PRE for p in v)


Rule = tuple[torch.Tensor, torch.Tensor | None]  # the aggregate (d,), and the rejected rows (n,) bool or None


class RuleContext(NamedTuple):
    """What the round gives a rule besides the rows and weights."""

    f: int
    generator: Any  # () -> a torch.Generator from the ``aggregator`` stream keyed by round
    center: torch.Tensor | None  # the previous aggregate (rules with ``keeps_center``)
    root: torch.Tensor | None  # the server's root update (rules with ``needs_root``)


def _chosen(u: torch.Tensor, chosen: torch.Tensor) -> Rule:
    """The mean of the selected rows, and every other row flagged."""
    flagged = torch.ones(len(u), dtype=torch.bool, device=u.device)
    flagged[chosen] = False
    return u[chosen].mean(0), flagged


@dataclass
class AggregatorConfig:
    """The keys every aggregator has. A subclass's ``apply`` runs its rule; ``needs`` is
    ``(can it run with n rows and f, what it needs)``, checked before training."""

    name: str = "mean"
    f: int | None = option(None, integer(0, nullable=True, note=" (null: expected Byzantine clients per round)"))
    pre: list[str] = option([], (_pre_ok, f"a list of {', '.join(PRE)}"))
    bucket_size: int = option(2, integer(1))
    clip_tau: float = option(1.0, number(0, min_open=True))
    needs: ClassVar[tuple[Any, str] | None] = None
    needs_root: ClassVar[bool] = False
    keeps_center: ClassVar[bool] = False

    def apply(self, u: torch.Tensor, w: torch.Tensor, ctx: RuleContext) -> Rule:
        """The aggregate of rows ``u`` with weights ``w``; rules with an ``f`` and nothing else."""
        return getattr(agg, self.name)(u, f=ctx.f), None

    def assumed_f(self, run: Any) -> int:
        """``f``, or the expected number of Byzantine clients among the sampled ones."""
        if self.f is not None:
            return self.f
        byz = run.attack.count(run.num_clients)
        return min(run.clients_per_round, math.ceil(byz * run.clients_per_round / run.num_clients))

    def rows(self, n: int) -> int:
        """Rows the rule receives from ``n`` clients after pre-aggregation."""
        for p in self.pre:
            if p == "bucketing":
                n = math.ceil(n / self.bucket_size)
        return n

    def check(self, run: Any) -> str | None:
        f = self.assumed_f(run)
        n = run.clients_per_round
        where = f"clients_per_round={n}" + (f" -> {self.rows(n)} buckets" if "bucketing" in self.pre else "")
        if ("nnm" in self.pre or "arc" in self.pre) and not n > f:
            return f"aggregator.pre={self.pre}: nnm and arc need n > f, got {where}, f={f}"
        if self.needs is not None and not self.needs[0](self.rows(n), f, self):
            fix = "lower aggregator.f or raise clients_per_round"
            return f"aggregator={self.name}: needs {self.needs[1]}, got {where}, f={f}; {fix}"
        return None


@register("aggregator", "mean")
@dataclass
class Mean(AggregatorConfig):
    name: str = "mean"

    def apply(self, u: torch.Tensor, w: torch.Tensor, ctx: RuleContext) -> Rule:
        return agg.weighted_mean(u, w), None


@register("aggregator", "median")
@dataclass
class Median(AggregatorConfig):
    name: str = "median"

    def apply(self, u: torch.Tensor, w: torch.Tensor, ctx: RuleContext) -> Rule:
        return agg.median(u), None


@register("aggregator", "trimmed_mean")
@dataclass
class TrimmedMean(AggregatorConfig):
    name: str = "trimmed_mean"
    needs: ClassVar = (lambda n, f, c: n > 2 * f, "n > 2f")


@register("aggregator", "meamed")
@dataclass
class MeaMed(AggregatorConfig):
    name: str = "meamed"
    needs: ClassVar = (lambda n, f, c: n > 2 * f, "n > 2f")


@register("aggregator", "krum")
@dataclass
class Krum(AggregatorConfig):
    name: str = "krum"
    needs: ClassVar = (lambda n, f, c: n > 2 * f + 2, "n > 2f + 2")

    def apply(self, u: torch.Tensor, w: torch.Tensor, ctx: RuleContext) -> Rule:
        return _chosen(u, agg.multikrum_select(u, f=ctx.f, m=1))


@register("aggregator", "multikrum")
@dataclass
class MultiKrum(AggregatorConfig):
    name: str = "multikrum"
    m: int | None = option(None, integer(1, nullable=True, note=" (null: n - f)"))
    needs: ClassVar = (lambda n, f, c: n > 2 * f + 2 and (c.m is None or c.m <= n), "n > 2f + 2 and m <= n")

    def apply(self, u: torch.Tensor, w: torch.Tensor, ctx: RuleContext) -> Rule:
        return _chosen(u, agg.multikrum_select(u, f=ctx.f, m=self.m))


@register("aggregator", "bulyan")
@dataclass
class Bulyan(AggregatorConfig):
    name: str = "bulyan"
    needs: ClassVar = (lambda n, f, c: n >= 4 * f + 3, "n >= 4f + 3")

    def apply(self, u: torch.Tensor, w: torch.Tensor, ctx: RuleContext) -> Rule:
        return agg.bulyan(u, f=ctx.f), _chosen(u, agg.bulyan_select(u, f=ctx.f))[1]


@register("aggregator", "mda")
@dataclass
class MDA(AggregatorConfig):
    name: str = "mda"
    needs: ClassVar = (
        lambda n, f, c: n > f and math.comb(n, f) <= MDA_MAX_SUBSETS,
        f"n > f and C(n, f) <= {MDA_MAX_SUBSETS:,}",
    )

    def apply(self, u: torch.Tensor, w: torch.Tensor, ctx: RuleContext) -> Rule:
        return _chosen(u, agg.mda_select(u, f=ctx.f))


@register("aggregator", "geomed")
@dataclass
class GeoMed(AggregatorConfig):
    name: str = "geomed"
    nu: float = option(1e-6, number(0, min_open=True))
    max_iter: int = option(100, integer(1))
    tol: float = option(1e-7, number(min=0))

    def apply(self, u: torch.Tensor, w: torch.Tensor, ctx: RuleContext) -> Rule:
        return agg.geomed(u, weights=w, nu=self.nu, max_iter=self.max_iter, tol=self.tol), None


@register("aggregator", "cclip")
@dataclass
class CClip(AggregatorConfig):
    """Flags a client whose update lies farther than ``tau`` from the centre (it was clipped)."""

    name: str = "cclip"
    tau: float = option(1.0, number(0, min_open=True))
    iterations: int = option(1, integer(1))
    keeps_center: ClassVar[bool] = True

    def apply(self, u: torch.Tensor, w: torch.Tensor, ctx: RuleContext) -> Rule:
        flagged = agg.distances_to(u, ctx.center) > self.tau
        return agg.cclip(u, tau=self.tau, iterations=self.iterations, center=ctx.center), flagged


@register("aggregator", "norm_bound")
@dataclass
class NormBound(AggregatorConfig):
    """Flags a client whose update was longer than ``tau`` (it was clipped)."""

    name: str = "norm_bound"
    tau: float = option(1.0, number(0, min_open=True))

    def apply(self, u: torch.Tensor, w: torch.Tensor, ctx: RuleContext) -> Rule:
        return agg.norm_bound(u, tau=self.tau, weights=w), agg.row_norms(u) > self.tau


@register("aggregator", "fltrust")
@dataclass
class FLTrust(AggregatorConfig):
    """Flags a client with trust score 0."""

    name: str = "fltrust"
    root_size: int = option(100, integer(1))
    needs_root: ClassVar[bool] = True

    def apply(self, u: torch.Tensor, w: torch.Tensor, ctx: RuleContext) -> Rule:
        return agg.fltrust(u, root=ctx.root), agg.fltrust_scores(u, ctx.root) <= 0


@register("aggregator", "dnc")
@dataclass
class DnC(AggregatorConfig):
    name: str = "dnc"
    iterations: int = option(1, integer(1))
    sub_dim: int = option(10000, integer(1))
    filter_frac: float = option(1.0, number(min=0))
    needs: ClassVar = (lambda n, f, c: n > math.floor(c.filter_frac * f), "n > floor(filter_frac * f)")

    def apply(self, u: torch.Tensor, w: torch.Tensor, ctx: RuleContext) -> Rule:
        chosen = agg.dnc_select(
            u,
            f=ctx.f,
            generator=ctx.generator(),
            iterations=self.iterations,
            sub_dim=self.sub_dim,
            filter_frac=self.filter_frac,
        )
        return _chosen(u, chosen)
