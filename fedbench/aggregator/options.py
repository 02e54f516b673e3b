"""The ``aggregator`` config group: the server's aggregation rule and its pre-aggregation.

``aggregator=mean`` (default, FedAvg's sample-weighted mean) or a robust rule; every option has
``f`` (the number of Byzantine clients the rule assumes per round; null: the expected number among
the sampled clients, ``ceil(attack's Byzantine count * clients_per_round / num_clients)``) and
``pre``, a list of pre-aggregation steps applied in order before the rule (``bucketing`` with
``bucket_size``, ``nnm``, ``clip`` with ``clip_tau``, ``arc``). A rule that cannot run at the
round's number of rows (``clients_per_round``, or the bucket count after bucketing) is a config
error before training. The math lives in the pure functions ``fedbench.aggregator.<name>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from fedbench.registry import integer, number, option, register

PRE = ("bucketing", "nnm", "clip", "arc")
MDA_MAX_SUBSETS = 1_000_000


def _pre_ok(v: Any) -> bool:
    return isinstance(v, list) and all(p in PRE for p in v)


# rule -> (can it run with n rows and f, what it needs)
_NEEDS: dict[str, tuple[Any, str]] = {
    "trimmed_mean": (lambda n, f, c: n > 2 * f, "n > 2f"),
    "meamed": (lambda n, f, c: n > 2 * f, "n > 2f"),
    "krum": (lambda n, f, c: n > 2 * f + 2, "n > 2f + 2"),
    "multikrum": (lambda n, f, c: n > 2 * f + 2 and (c.m is None or c.m <= n), "n > 2f + 2 and m <= n"),
    "bulyan": (lambda n, f, c: n >= 4 * f + 3, "n >= 4f + 3"),
    "mda": (lambda n, f, c: n > f and math.comb(n, f) <= MDA_MAX_SUBSETS, f"n > f and C(n, f) <= {MDA_MAX_SUBSETS:,}"),
    "dnc": (lambda n, f, c: n > math.floor(c.filter_frac * f), "n > floor(filter_frac * f)"),
}


@dataclass
class AggregatorConfig:
    """The keys every aggregator has."""

    name: str = "mean"
    f: int | None = option(None, integer(0, nullable=True, note=" (null: expected Byzantine clients per round)"))
    pre: list[str] = option([], (_pre_ok, f"a list of {', '.join(PRE)}"))
    bucket_size: int = option(2, integer(1))
    clip_tau: float = option(1.0, number(0, min_open=True))
    selects: ClassVar[bool] = False  # whether the rule flags clients (detection metrics)

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
        need = _NEEDS.get(self.name)
        if need is not None and not need[0](self.rows(n), f, self):
            fix = "lower aggregator.f or raise clients_per_round"
            return f"aggregator={self.name}: needs {need[1]}, got {where}, f={f}; {fix}"
        return None


@register("aggregator", "mean")
@dataclass
class Mean(AggregatorConfig):
    name: str = "mean"


def _plain(name: str, selects: bool = False) -> None:
    cls = type(name.title().replace("_", ""), (AggregatorConfig,), {"__annotations__": {"name": str}, "name": name})
    cls.selects = selects
    cls.__module__ = __name__
    register("aggregator", name)(dataclass(cls))


for _name in ("median", "trimmed_mean", "meamed"):
    _plain(_name)
for _name in ("krum", "bulyan", "mda"):
    _plain(_name, selects=True)


@register("aggregator", "multikrum")
@dataclass
class MultiKrum(AggregatorConfig):
    name: str = "multikrum"
    m: int | None = option(None, integer(1, nullable=True, note=" (null: n - f)"))
    selects: ClassVar[bool] = True


@register("aggregator", "geomed")
@dataclass
class GeoMed(AggregatorConfig):
    name: str = "geomed"
    nu: float = option(1e-6, number(0, min_open=True))
    max_iter: int = option(100, integer(1))
    tol: float = option(1e-7, number(min=0))


@register("aggregator", "cclip")
@dataclass
class CClip(AggregatorConfig):
    name: str = "cclip"
    tau: float = option(1.0, number(0, min_open=True))
    iterations: int = option(1, integer(1))
    selects: ClassVar[bool] = True  # a client whose update was clipped is flagged


@register("aggregator", "norm_bound")
@dataclass
class NormBound(AggregatorConfig):
    name: str = "norm_bound"
    tau: float = option(1.0, number(0, min_open=True))
    selects: ClassVar[bool] = True


@register("aggregator", "fltrust")
@dataclass
class FLTrust(AggregatorConfig):
    name: str = "fltrust"
    root_size: int = option(100, integer(1))
    selects: ClassVar[bool] = True  # trust score 0 = rejected


@register("aggregator", "dnc")
@dataclass
class DnC(AggregatorConfig):
    name: str = "dnc"
    iterations: int = option(1, integer(1))
    sub_dim: int = option(10000, integer(1))
    filter_frac: float = option(1.0, number(min=0))
    selects: ClassVar[bool] = True
