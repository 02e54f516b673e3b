"""FLTrust (Cao, Fang, Liu & Gong 2021, "FLTrust: Byzantine-robust federated learning via trust
bootstrapping"): the server trains on a small root dataset and weighs each client update by its
direction's agreement with the server's own update, after rescaling it to the server's norm."""

from __future__ import annotations

import torch

from fedbench.aggregator._common import check_updates, combine, finite_rows, row_norms


def _check_root(updates: torch.Tensor, root: torch.Tensor, rule: str) -> None:
    if not isinstance(root, torch.Tensor) or tuple(root.shape) != (updates.shape[1],):
        shape = tuple(root.shape) if isinstance(root, torch.Tensor) else type(root).__name__
        raise ValueError(f"{rule} needs a root update of shape ({updates.shape[1]},), got {shape}")


def _scores(updates: torch.Tensor, root: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    finite = finite_rows(updates)
    norms = row_norms(updates, finite)
    root = root.to(device=updates.device, dtype=updates.dtype)
    root_norm = float(torch.linalg.vector_norm(root, dtype=torch.float64))
    # A zero or non-finite update (or root) has no direction: trust 0.
    valid = finite & (norms > 0) & (0 < root_norm < float("inf"))
    if not bool(valid.any()):
        return torch.zeros_like(norms), finite, norms, root_norm
    # each entry of the product is one row's dot product, so a non-finite row spoils only its own
    dots = (updates @ root).to(torch.float64)
    cos = torch.where(valid, dots / (norms * root_norm), 0.0)
    return cos.clamp_min(0), finite, norms, root_norm


def fltrust_scores(updates: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
    """``(n,)`` float64 trust scores ``TS_i = ReLU(cos(u_i, root))`` (Cao et al. 2021); 0 for a
    zero or non-finite update, and for all rows when the root update is zero."""
    check_updates(updates, "fltrust")
    _check_root(updates, root, "fltrust")
    return _scores(updates, root)[0]


def fltrust(updates: torch.Tensor, *, root: torch.Tensor) -> torch.Tensor:
    """FLTrust (Cao et al. 2021): each update rescaled to the root update's norm and weighted by its
    trust score,

        agg = sum_i TS_i (|root| / |u_i|) u_i / sum_i TS_i,

    with ``TS_i`` from :func:`fltrust_scores`; zeros when every score is 0.
    """
    check_updates(updates, "fltrust")
    _check_root(updates, root, "fltrust")
    ts, finite, norms, root_norm = _scores(updates, root)
    total = float(ts.sum())
    if total <= 0:
        return updates.new_zeros(updates.shape[1])
    coef = torch.where(ts > 0, ts * root_norm / norms, 0.0) / total
    return combine(coef, updates, finite)
