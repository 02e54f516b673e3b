"""Divide-and-Conquer (Shejwalkar & Houmansadr 2021, "Manipulating the Byzantine: optimizing model
poisoning attacks and defenses for federated learning"), following Blades' reading of their
Algorithm 2."""

from __future__ import annotations

import math

import torch

from fedbench.aggregator._common import check_f, check_updates, finite_rows
from fedbench.aggregator.distance import mean_of_rows


def dnc_select(
    updates: torch.Tensor,
    *,
    f: int,
    generator: torch.Generator | None = None,
    iterations: int = 1,
    sub_dim: int = 10000,
    filter_frac: float = 1.0,
) -> torch.Tensor:
    """LongTensor (ascending) of the rows DnC keeps. Each of the ``iterations`` rounds:

    1. draws ``b = min(sub_dim, d)`` coordinates without replacement from ``generator`` (all of
       them, no draw, when ``sub_dim >= d``);
    2. centres the rows restricted to them, ``x_i = u_i[r] - mean_j u_j[r]``, and takes the top
       right singular vector ``v`` of the centred ``(n, b)`` matrix;
    3. scores ``s_i = (x_i . v)^2`` and keeps the ``n - floor(filter_frac * f)`` lowest scores
       (the lower index first on a tie).

    The result is the rows kept in every round (if that is empty, the rows kept in the most
    rounds). Non-finite rows are left out of the mean and the SVD, score ``+inf``, and are never
    kept. Needs ``n > floor(filter_frac * f)``.
    """
    n, d = check_updates(updates, "dnc")
    if not (isinstance(filter_frac, int | float) and 0 <= filter_frac < math.inf):
        raise ValueError(f"dnc needs a finite filter_frac >= 0, got filter_frac={filter_frac!r}")
    drop = math.floor(filter_frac * f) if isinstance(f, int) and not isinstance(f, bool) else 0
    check_f("dnc", n, f, n > drop, "n > floor(filter_frac * f)")
    for name, value in (("iterations", iterations), ("sub_dim", sub_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"dnc needs an integer {name} >= 1, got {name}={value!r}")
    finite = finite_rows(updates)
    idx = finite.nonzero().flatten()
    kept = torch.zeros(n, dtype=torch.long, device=updates.device)
    for _ in range(iterations):
        if sub_dim >= d:
            x = updates[idx]
        else:
            cols = torch.randperm(d, generator=generator, device=updates.device)[:sub_dim].sort().values
            x = updates[:, cols]
            x = x[idx] if len(idx) < n else x
        x = x.to(torch.float64)
        x = x - x.mean(dim=0)
        score = torch.full((n,), math.inf, dtype=torch.float64, device=updates.device)
        if len(idx):
            v = torch.linalg.svd(x, full_matrices=False).Vh[0]
            score[idx] = (x @ v).pow(2)
        good = torch.sort(score, stable=True).indices[: n - drop]
        kept[good[finite[good]]] += 1
    best = kept.max()
    return (kept == best).nonzero().flatten() if best > 0 else idx


def dnc(
    updates: torch.Tensor,
    *,
    f: int,
    generator: torch.Generator | None = None,
    iterations: int = 1,
    sub_dim: int = 10000,
    filter_frac: float = 1.0,
) -> torch.Tensor:
    """Divide-and-Conquer (Shejwalkar & Houmansadr 2021): the mean of the rows of
    :func:`dnc_select` (same arguments); zeros if no row is finite."""
    chosen = dnc_select(
        updates, f=f, generator=generator, iterations=iterations, sub_dim=sub_dim, filter_frac=filter_frac
    )
    if len(chosen) == 0:
        return updates.new_zeros(updates.shape[1])
    return mean_of_rows(updates, chosen)
