"""Attacks that need no search: sign flipping, Gaussian noise, a large constant, non-finite values."""

from __future__ import annotations

import math

import torch

from fedbench.attack._common import check, rows, work

NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def sign_flip(honest: torch.Tensor, *, f: int, scale: float = 1.0) -> torch.Tensor:
    """Sign flipping: ``f`` copies of ``-scale * mean(honest)``.

    Allen-Zhu et al., "Byzantine-resilient non-convex stochastic gradient descent", ICLR 2021
    (ByzFL's ``SignFlipping``, which has ``scale = 1``).
    """
    check(honest, f)
    return rows(-scale * work(honest).mean(dim=0), f, honest)


def gaussian(
    honest: torch.Tensor, *, f: int, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Gaussian noise: ``f`` independent rows with i.i.d. ``N(mean, std^2)`` coordinates.

    The classic random Byzantine worker (Blanchard et al., "Machine learning with adversaries:
    Byzantine tolerant gradient descent", NeurIPS 2017; Blades' noise adversary). Only ``honest``'s
    shape, dtype and device are used. With a ``generator`` the draw happens on the generator's device
    and is then moved, so one seed gives the same rows whatever the device of ``honest``.
    """
    check(honest, f)
    if not std >= 0:
        raise ValueError(f"std must be >= 0, got {std!r}")
    shape = (f, honest.shape[1])
    dtype = work(honest).dtype  # draw half precision in float32: same values as a float32 run, then rounded
    device = generator.device if generator is not None else honest.device
    z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    return (mean + std * z).to(device=honest.device, dtype=honest.dtype)


def large(honest: torch.Tensor, *, f: int, scale: float = 1e6) -> torch.Tensor:
    """A very large update: ``f`` copies of the constant vector ``scale * (1, ..., 1)``.

    The "same-value" attack of Li et al., "RSA: Byzantine-robust stochastic aggregation methods for
    distributed learning from heterogeneous datasets", AAAI 2019 (there with value 100), with a
    default far above any honest coordinate; ByzFL's ``Inf`` is its limit ``scale -> inf``
    (:func:`nonfinite`). A constant rather than ``scale * mean(honest)``: it does not vanish when the
    honest mean does, and ``-scale * mean`` is already :func:`sign_flip`. A ``scale`` that does not
    fit ``honest``'s dtype (1e6 in float16) is an error instead of silently becoming ``inf``.
    """
    check(honest, f)
    if not math.isfinite(scale) or abs(scale) > torch.finfo(honest.dtype).max:
        raise ValueError(f"scale={scale!r} is not a finite {honest.dtype}; use nonfinite() for inf rows")
    return torch.full((f, honest.shape[1]), float(scale), dtype=honest.dtype, device=honest.device)


def nonfinite(honest: torch.Tensor, *, f: int, value: str = "nan") -> torch.Tensor:
    """Non-finite rows: every coordinate NaN, +inf or -inf (``value`` in ``{"nan", "inf", "-inf"}``).

    Tests that an aggregator (or the round) survives or rejects non-numbers; ByzFL's ``Inf`` attack
    is ``value="inf"``.
    """
    check(honest, f)
    if value not in NONFINITE:
        raise ValueError(f"value must be one of {sorted(NONFINITE)}, got {value!r}")
    return torch.full((f, honest.shape[1]), NONFINITE[value], dtype=honest.dtype, device=honest.device)
