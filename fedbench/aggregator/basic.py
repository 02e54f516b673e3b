"""Plain averages: FedAvg's weighted mean and the unweighted mean (not robust: one non-finite or
huge row moves them arbitrarily, which is what a benchmark of attacks needs to show)."""

from __future__ import annotations

import torch

from fedbench.aggregator._common import check_updates


def weighted_mean(updates: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """FedAvg aggregation (McMahan et al. 2017): ``sum_k w_k u_k / sum_k w_k``.

    ``updates`` is ``(n, d)``; ``weights`` is ``(n,)`` and non-negative, typically the clients'
    sample counts ``n_k``. The result has the updates' dtype.
    """
    if updates.dim() != 2 or weights.shape != updates.shape[:1]:
        raise ValueError(f"need updates (n, d) and weights (n,), got {tuple(updates.shape)} and {tuple(weights.shape)}")
    w = weights.to(updates.dtype)
    return (w / w.sum()) @ updates


def mean(updates: torch.Tensor, *, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Arithmetic mean ``(1/n) sum_i u_i``, or :func:`weighted_mean` when ``weights`` is given.

    Non-finite entries propagate (intended: the mean is the non-robust baseline).
    """
    check_updates(updates, "mean")
    if weights is None:
        return updates.mean(dim=0)
    return weighted_mean(updates, weights)
