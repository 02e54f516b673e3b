from __future__ import annotations

import torch


def weighted_mean(updates: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """FedAvg aggregation (McMahan et al. 2017): ``sum_k w_k u_k / sum_k w_k``.

    ``updates`` is ``(n, d)``; ``weights`` is ``(n,)`` and non-negative, typically the clients'
    sample counts ``n_k``.
    """
    if updates.dim() != 2 or weights.shape != updates.shape[:1]:
        raise ValueError(f"need updates (n, d) and weights (n,), got {tuple(updates.shape)} and {tuple(weights.shape)}")
    w = weights.to(updates.dtype)
    return (w / w.sum()) @ updates
