"""ALIE and IPM with their scale tuned against the deployed aggregator (ByzFL's Optimal_* attacks).

ByzFL (Allouah et al., "Fixing by mixing: a recipe for optimal Byzantine ML under heterogeneity",
AISTATS 2023, and the ByzFL library's ``Optimal_ALittleIsEnough`` / ``Optimal_InnerProductManipulation``)
chooses the scale ``s`` that maximises the damage to the aggregate,

    J(s) = || aggregator(concat(honest, f copies of attack_s(honest))) - mean(honest) ||_2,

honest rows first, by a derivative-free line search of ``evals`` evaluations of ``J``:

- expansion: from ``x = start``, try ``x + delta``; while it improves ``J`` strictly, move there and
  double ``delta``; at the first non-improvement, shrink ``delta`` by ``ratio`` and stop;
- contraction: with the remaining evaluations, try ``best + delta`` and keep it if it improves
  strictly, shrinking ``delta`` by ``ratio`` after every try.

Defaults are ByzFL's: ``evals=20, start=0.0, delta=10.0, ratio=0.8``. The search only probes on the
``delta`` side of ``start`` and returns a local maximiser at best; against the plain mean ``J`` grows
without bound and the result is ``start + delta * (2^(evals-1) - 1)``. ``aggregator`` is the whole
server rule ``(n, d) -> (d,)``, pre-aggregation included (ByzFL's default is static clipping then
the average); it is called ``evals`` times, each with one device sync for ``J``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from fedbench.attack._common import check, rows, std, work

Aggregator = Callable[[torch.Tensor], torch.Tensor]


def line_maximize(
    objective: Callable[[float], float], *, evals: int, start: float, delta: float, ratio: float
) -> float:
    """ByzFL's line search (module docstring): the best ``x`` among ``evals`` evaluations of ``objective``."""
    if isinstance(evals, bool) or not isinstance(evals, int) or evals < 1:
        raise ValueError(f"evals must be an int >= 1, got {evals!r}")
    if not math.isfinite(start):
        raise ValueError(f"start must be finite, got {start!r}")
    if not math.isfinite(delta) or delta == 0:
        raise ValueError(f"delta must be finite and non-zero, got {delta!r}")
    if not 0.5 < ratio < 1:
        raise ValueError(f"ratio must be in (0.5, 1), got {ratio!r}")
    best_x, best_y = start, objective(start)
    left = evals - 1
    while left > 0:
        x = best_x + delta
        y = objective(x)
        left -= 1
        if y > best_y:
            best_x, best_y = x, y
            delta *= 2
        else:
            delta *= ratio
            break
    while left > 0:
        x = best_x + delta
        y = objective(x)
        left -= 1
        if y > best_y:
            best_x, best_y = x, y
        delta *= ratio
    return best_x


def _maximize(
    honest: torch.Tensor,
    f: int,
    aggregator: Aggregator,
    vector: Callable[[float], torch.Tensor],
    mean: torch.Tensor,
    **search: float,
) -> float:
    def damage(scale: float) -> float:
        agg = aggregator(torch.cat([honest, rows(vector(scale), f, honest)]))
        if agg.shape != mean.shape:
            raise ValueError(f"aggregator must map (n, d) to (d,), got shape {tuple(agg.shape)}")
        return float(torch.linalg.vector_norm(agg.to(mean.dtype) - mean))

    return line_maximize(damage, **search)  # type: ignore[arg-type]


def alie_adaptive_scale(
    honest: torch.Tensor,
    *,
    f: int,
    aggregator: Aggregator,
    evals: int = 20,
    start: float = 0.0,
    delta: float = 10.0,
    ratio: float = 0.8,
) -> float:
    """The ``z`` :func:`alie_adaptive` uses: ByzFL's line search of ``J(z)`` (module docstring)."""
    check(honest, f)
    x = work(honest)
    m, s = x.mean(dim=0), std(x)
    return _maximize(honest, f, aggregator, lambda z: m - z * s, m, evals=evals, start=start, delta=delta, ratio=ratio)


def alie_adaptive(
    honest: torch.Tensor,
    *,
    f: int,
    aggregator: Aggregator,
    evals: int = 20,
    start: float = 0.0,
    delta: float = 10.0,
    ratio: float = 0.8,
) -> torch.Tensor:
    """Adaptive ALIE: ``f`` copies of ``mean - z * std`` with ``z`` maximising ``J`` (module docstring).

    ByzFL's ``Optimal_ALittleIsEnough`` over :func:`~fedbench.attack.alie` (Baruch et al., NeurIPS
    2019). ByzFL's ALIE is ``mean + tau * std`` searched from 0 towards positive ``tau``; with this
    module's sign convention that search is ``delta=-10.0``; the default ``delta=10.0`` searches the
    ``mean - z * std`` side.
    """
    z = alie_adaptive_scale(honest, f=f, aggregator=aggregator, evals=evals, start=start, delta=delta, ratio=ratio)
    x = work(honest)
    return rows(x.mean(dim=0) - z * std(x), f, honest)


def ipm_adaptive_scale(
    honest: torch.Tensor,
    *,
    f: int,
    aggregator: Aggregator,
    evals: int = 20,
    start: float = 0.0,
    delta: float = 10.0,
    ratio: float = 0.8,
) -> float:
    """The ``epsilon`` :func:`ipm_adaptive` uses: ByzFL's line search of ``J(epsilon)`` (module docstring)."""
    check(honest, f)
    m = work(honest).mean(dim=0)
    return _maximize(honest, f, aggregator, lambda e: -e * m, m, evals=evals, start=start, delta=delta, ratio=ratio)


def ipm_adaptive(
    honest: torch.Tensor,
    *,
    f: int,
    aggregator: Aggregator,
    evals: int = 20,
    start: float = 0.0,
    delta: float = 10.0,
    ratio: float = 0.8,
) -> torch.Tensor:
    """Adaptive IPM: ``f`` copies of ``-epsilon * mean`` with ``epsilon`` maximising ``J`` (module docstring).

    ByzFL's ``Optimal_InnerProductManipulation`` over :func:`~fedbench.attack.ipm` (Xie et al., UAI 2019).
    """
    eps = ipm_adaptive_scale(honest, f=f, aggregator=aggregator, evals=evals, start=start, delta=delta, ratio=ratio)
    return rows(-eps * work(honest).mean(dim=0), f, honest)
