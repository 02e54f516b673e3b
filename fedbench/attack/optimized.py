"""Min-Max and Min-Sum (Shejwalkar and Houmansadr, NDSS 2021): the farthest push that stays inside the honest spread.

Shejwalkar and Houmansadr, "Manipulating the Byzantine: optimizing model poisoning attacks and
defenses for federated learning", NDSS 2021, Section IV (AGR-agnostic attacks). The malicious
update is ``mal = m - gamma * p`` with ``m`` the honest mean and ``p`` a perturbation direction, and
``gamma`` the largest value with

- Min-Max: ``max_i ||mal - u_i|| <= max_{i,j} ||u_i - u_j||`` (no farther from any honest update
  than the two farthest honest updates are from each other);
- Min-Sum: ``sum_i ||mal - u_i||^2 <= max_i sum_j ||u_i - u_j||^2`` (the paper's formula; the
  authors' released code bounds by ``min_i`` instead: ``threshold="min"``).

``gamma`` comes from the paper's Algorithm 1 as in the authors' code (``our_attack_dist`` /
``our_attack_score``): try ``gamma_init`` (10), then move by half the previous step (up after a
success, down after a failure) until the candidate is within ``tol`` (1e-5) of the last success,
and return the last success (0 if none). The final ``gamma`` is feasible and within ``2 * tol`` of
the boundary, but never reaches ``2 * gamma_init``: raise ``gamma_init`` when the boundary may lie
beyond it. Both constraints are convex in ``gamma`` with ``gamma = 0`` feasible, so the feasible
set is an interval and the halving search finds its end.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fedbench.attack._common import check, rows, std, work

PERTURBATIONS = ("unit", "std", "sign")


def _direction(x: torch.Tensor, m: torch.Tensor, perturbation: str) -> torch.Tensor:
    if perturbation == "unit":
        norm = torch.linalg.vector_norm(m)
        return torch.where(norm > 0, m / norm, torch.zeros_like(m))  # a zero mean has no direction: p = 0
    if perturbation == "std":
        return std(x)
    if perturbation == "sign":
        return torch.sign(m)
    raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {perturbation!r}")


def _halving_search(feasible: Callable[[float], bool], gamma_init: float, tol: float, max_iter: int) -> float:
    """Algorithm 1's search: the last feasible ``gamma`` once the next candidate is within ``tol`` of it."""
    gamma, step, succ = gamma_init, gamma_init, 0.0
    for _ in range(max_iter):
        if abs(succ - gamma) <= tol:
            break
        if feasible(gamma):
            succ, gamma = gamma, gamma + step / 2
        else:
            gamma = gamma - step / 2
        step /= 2
    return succ


def _solve(
    honest: torch.Tensor, kind: str, perturbation: str, gamma_init: float, tol: float, max_iter: int, threshold: str
) -> tuple[float, torch.Tensor, torch.Tensor]:
    if not 0 < gamma_init < float("inf"):
        raise ValueError(f"gamma_init must be finite and > 0, got {gamma_init!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    if threshold not in ("max", "min"):
        raise ValueError(f"threshold must be 'max' or 'min', got {threshold!r}")
    x = work(honest)
    m = x.mean(dim=0)
    p = _direction(x, m, perturbation)
    # ||m - gamma p - u_i||^2 = a_i - 2 gamma b_i + gamma^2 c: one pass over the data (and one device
    # sync) instead of one per search step; the search then runs on float64 scalars.
    diff = m - x
    a = (diff * diff).sum(dim=1)
    b = diff @ p
    c = (p * p).sum()
    sq = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").square()  # exact differences, no Gram trick
    if kind == "minmax":
        bound = sq.max()
    else:
        scores = sq.sum(dim=1)
        bound = scores.max() if threshold == "max" else scores.min()
    a, b, c, bound = (t.double().cpu() for t in (a, b, c, bound))

    def feasible(gamma: float) -> bool:
        dist = a - 2 * gamma * b + gamma * gamma * c
        return bool((dist.max() if kind == "minmax" else dist.sum()) <= bound)

    return _halving_search(feasible, gamma_init, tol, max_iter), m, p


def minmax_gamma(
    honest: torch.Tensor,
    *,
    perturbation: str = "unit",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_iter: int = 100,
) -> float:
    """The ``gamma`` :func:`minmax` uses: largest found with ``max_i ||m - gamma p - u_i|| <= max_ij ||u_i - u_j||``."""
    check(honest, 1)
    return _solve(honest, "minmax", perturbation, gamma_init, tol, max_iter, "max")[0]


def minsum_gamma(
    honest: torch.Tensor,
    *,
    perturbation: str = "unit",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_iter: int = 100,
    threshold: str = "max",
) -> float:
    """The ``gamma`` :func:`minsum` uses: largest found with ``sum_i ||m - gamma p - u_i||^2 <= max_i S_i``.

    ``S_i = sum_j ||u_i - u_j||^2``; ``threshold="min"`` bounds by ``min_i S_i`` as the authors' code.
    """
    check(honest, 1)
    return _solve(honest, "minsum", perturbation, gamma_init, tol, max_iter, threshold)[0]


def minmax(
    honest: torch.Tensor,
    *,
    f: int,
    perturbation: str = "unit",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_iter: int = 100,
) -> torch.Tensor:
    """Min-Max: ``f`` copies of ``m - gamma * p`` with ``max_i ||mal - u_i|| <= max_{i,j} ||u_i - u_j||``.

    Shejwalkar and Houmansadr, NDSS 2021 (module docstring). ``m = mean(honest)``; ``p`` is
    ``"unit"``: ``m / ||m||`` (0 if ``m = 0``), ``"std"``: the coordinate-wise sample std, or
    ``"sign"``: ``sign(m)``. ``gamma`` from the halving search (:func:`minmax_gamma`).
    """
    check(honest, f)
    gamma, m, p = _solve(honest, "minmax", perturbation, gamma_init, tol, max_iter, "max")
    return rows(m - gamma * p, f, honest)


def minsum(
    honest: torch.Tensor,
    *,
    f: int,
    perturbation: str = "unit",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_iter: int = 100,
    threshold: str = "max",
) -> torch.Tensor:
    """Min-Sum: ``f`` copies of ``m - gamma * p`` with ``sum_i ||mal - u_i||^2 <= max_i sum_j ||u_i - u_j||^2``.

    Shejwalkar and Houmansadr, NDSS 2021 (module docstring); ``p`` as in :func:`minmax`.
    ``threshold="min"`` replaces ``max_i`` by ``min_i`` as the authors' released code does.
    """
    check(honest, f)
    gamma, m, p = _solve(honest, "minsum", perturbation, gamma_init, tol, max_iter, threshold)
    return rows(m - gamma * p, f, honest)
