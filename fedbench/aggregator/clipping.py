"""Norm-clipping rules: centred clipping and norm bounding.

``clip_tau(x) = x * min(1, tau / |x|)``; a row with a non-finite entry has no usable direction
and is left out (zero influence).
"""

from __future__ import annotations

import math

import torch

from fedbench.aggregator._common import check_positive, check_updates, column_chunks, combine, finite_rows, row_norms
from fedbench.aggregator.geometric import _check_weights


def clip_scale(norms: torch.Tensor, tau: float) -> torch.Tensor:
    """``min(1, tau / norm)`` per row (1 for a zero norm, 0 for an infinite one)."""
    return torch.where(norms > tau, tau / norms, torch.ones_like(norms))


def _distances_to(updates: torch.Tensor, center: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """``(n,)`` float64 ``|u_i - center|``, +inf for non-finite rows, chunked over columns so no
    ``(n, d)`` difference is ever held."""
    n, d = updates.shape
    sq = torch.zeros(n, dtype=torch.float64, device=updates.device)
    for cols in column_chunks(n, d):
        sq += torch.linalg.vector_norm(updates[:, cols] - center[cols], dim=1).to(torch.float64).square()
    redo = (finite & torch.isinf(sq)).nonzero().flatten()  # finite rows whose float32 norm overflowed
    if len(redo):
        sq[redo] = (updates[redo].to(torch.float64) - center.to(torch.float64)).square().sum(dim=1)
    return torch.where(finite, sq.sqrt(), math.inf)


def distances_to(updates: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """``(n,)`` float64 ``|u_i - center|``, +inf for rows with a non-finite entry."""
    return _distances_to(updates, center, finite_rows(updates))


def cclip(
    updates: torch.Tensor, *, tau: float, iterations: int = 1, center: torch.Tensor | None = None
) -> torch.Tensor:
    """Centred clipping (Karimireddy, He & Jaggi 2021, "Learning from history for Byzantine robust
    optimization"): from ``v_0 = center`` (zeros if None; the previous round's aggregate in the
    paper), ``iterations`` times

        v_{l+1} = v_l + (1/n) sum_i clip_tau(u_i - v_l),

    returning ``v_L``. Non-finite rows are left out (``n`` counts the finite rows); with none
    finite the result is the centre.
    """
    n, d = check_updates(updates, "cclip")
    check_positive("cclip", "tau", tau)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"cclip needs an integer iterations >= 1, got iterations={iterations!r}")
    if center is None:
        v = updates.new_zeros(d)
    else:
        if tuple(center.shape) != (d,):
            raise ValueError(f"cclip needs a centre of shape ({d},), got {tuple(center.shape)}")
        v = center.to(device=updates.device, dtype=updates.dtype).clone()
    finite = finite_rows(updates)
    count = int(finite.sum())
    if count == 0:
        return v
    for _ in range(iterations):
        scale = torch.where(finite, clip_scale(_distances_to(updates, v, finite), tau), 0.0)
        coef = scale / count
        # v + sum_i c_i (u_i - v) = v (1 - sum_i c_i) + sum_i c_i u_i: one product with the stack
        v = v * (1 - float(coef.sum())) + combine(coef, updates, finite)
    return v


def norm_bound(updates: torch.Tensor, *, tau: float, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Norm bounding (Sun, Kairouz, Suresh & McMahan 2019, "Can you really backdoor federated
    learning?"): clip every update to norm ``tau``, then take the (weighted) mean,

        agg = sum_i w_i clip_tau(u_i) / sum_i w_i,

    ``w`` the ``weights`` (equal if None). Non-finite rows get weight 0; with no finite row of
    positive weight the result is zeros.
    """
    n, _ = check_updates(updates, "norm_bound")
    check_positive("norm_bound", "tau", tau)
    w = _check_weights(weights, n, "norm_bound")
    finite = finite_rows(updates)
    w = torch.ones(n, dtype=torch.float64, device=updates.device) if w is None else w.to(updates.device)
    w = torch.where(finite, w, 0.0)
    total = float(w.sum())
    if total <= 0:
        return updates.new_zeros(updates.shape[1])
    return combine(w * clip_scale(row_norms(updates, finite), tau) / total, updates, finite)
