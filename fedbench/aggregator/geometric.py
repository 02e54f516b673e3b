"""Geometric median by the smoothed Weiszfeld algorithm of RFA (Pillutla, Kakade & Harchaoui
2022, "Robust aggregation for federated learning")."""

from __future__ import annotations

from typing import NamedTuple

import torch

from fedbench.aggregator._common import check_positive, check_updates, finite_rows
from fedbench.aggregator.distance import centered_gram


class GeomedResult(NamedTuple):
    value: torch.Tensor  # (d,) the aggregate
    weights: torch.Tensor  # (n,) float64: value = sum_i weights_i u_i, zero for non-finite rows
    iterations: int  # Weiszfeld updates done
    converged: bool  # whether the tolerance stopped it before max_iter


def _check_weights(weights: torch.Tensor | None, n: int, rule: str) -> torch.Tensor | None:
    if weights is None:
        return None
    w = torch.as_tensor(weights).to(torch.float64)
    if w.shape != (n,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"{rule} needs (n,) finite non-negative weights, got {tuple(w.shape)} for n={n}")
    return w


def geomed_solve(
    updates: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    nu: float = 1e-6,
    max_iter: int = 100,
    tol: float = 1e-7,
) -> GeomedResult:
    """:func:`geomed` with its iteration count and final weights (see :class:`GeomedResult`)."""
    n, _ = check_updates(updates, "geomed")
    check_positive("geomed", "nu", nu)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"geomed needs an integer max_iter >= 1, got max_iter={max_iter!r}")
    if not tol >= 0:
        raise ValueError(f"geomed needs tol >= 0, got tol={tol!r}")
    alpha = _check_weights(weights, n, "geomed")
    finite = finite_rows(updates)
    alpha = torch.ones(n, dtype=torch.float64) if alpha is None else alpha
    alpha = torch.where(finite, alpha.to(updates.device), 0.0)
    if float(alpha.sum()) <= 0:  # nothing finite with weight: no information, no move
        return GeomedResult(updates.new_zeros(updates.shape[1]), alpha, 0, True)
    alpha = alpha / alpha.sum()

    # Every Weiszfeld iterate is a convex combination sum_i w_i u_i of the rows, so distances to
    # it follow from the Gram matrix: |u_i - z|^2 = G_ii - 2 (G w)_i + w'Gw. Each iteration is
    # then O(n^2) instead of a pass over the (n, d) stack.
    idx = finite.nonzero().flatten()
    x = updates if len(idx) == n else updates[idx]
    a = alpha[idx]
    gram = centered_gram(x)
    diag = gram.diagonal()

    def distances(w: torch.Tensor) -> torch.Tensor:
        gw = gram @ w
        return (diag - 2 * gw + w @ gw).clamp_min(0).sqrt()

    w = a.clone()  # start at the weighted mean, as RFA does
    dist = distances(w)
    objective = float(a @ dist)
    iterations, converged = 0, False
    for iterations in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        beta = a / dist.clamp_min(nu)
        w = beta / beta.sum()
        dist = distances(w)
        new_objective = float(a @ dist)
        converged = abs(objective - new_objective) <= tol * new_objective
        objective = new_objective
        if converged:
            break
    full = torch.zeros(n, dtype=torch.float64, device=updates.device)
    full[idx] = w
    return GeomedResult(w.to(x.dtype) @ x, full, iterations, converged)


def geomed(
    updates: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    nu: float = 1e-6,
    max_iter: int = 100,
    tol: float = 1e-7,
) -> torch.Tensor:
    """Approximate geometric median ``argmin_z sum_i alpha_i |z - u_i|`` by smoothed Weiszfeld
    (RFA, Pillutla et al. 2022), ``alpha`` the normalised ``weights`` (equal if None):

        z_0 = sum_i alpha_i u_i;  beta_i = alpha_i / max(nu, |z_t - u_i|);
        z_{t+1} = sum_i beta_i u_i / sum_i beta_i,

    stopping when the objective ``sum_i alpha_i |z - u_i|`` changes by at most ``tol`` times its
    value, or after ``max_iter`` updates. Non-finite rows get weight 0; with no finite row of
    positive weight the result is zeros. :func:`geomed_solve` also returns the iteration count.
    """
    return geomed_solve(updates, weights=weights, nu=nu, max_iter=max_iter, tol=tol).value
