"""Evaluation of the global model: test accuracy/loss and per-client accuracy (fairness)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


@torch.no_grad()
def per_sample(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    prep: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample cross-entropy loss and correctness (bool) of the model with ``params``; ``prep``
    turns stored samples into model inputs (the dataset's batch function, without augmentation)."""
    losses, correct = [], []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        logits = functional_call(model, params, (xb if prep is None else prep(xb),))
        losses.append(F.cross_entropy(logits, yb, reduction="none"))
        correct.append(logits.argmax(-1) == yb)
    return torch.cat(losses), torch.cat(correct)


def client_accuracy(correct: torch.Tensor, owner: torch.Tensor, num_clients: int) -> np.ndarray:
    """Accuracy on each client's own samples; ``owner[i]`` is the client holding sample ``i``
    (``-1`` if none). Clients with no samples get NaN."""
    held = owner >= 0
    hits = torch.bincount(owner[held], weights=correct[held].double(), minlength=num_clients)
    sizes = torch.bincount(owner[held], minlength=num_clients).double()
    acc = (hits / sizes).cpu().numpy()
    return acc


def fairness(acc: np.ndarray) -> dict[str, float]:
    """Summary of per-client accuracies: mean, population std (``ddof=0``), 10th percentile
    (numpy's linear interpolation) and worst client, over the clients that hold data (empty
    clients have NaN accuracy and are left out; with none, every statistic is NaN)."""
    acc = acc[np.isfinite(acc)]
    if acc.size == 0:
        return dict.fromkeys(("client_acc_mean", "client_acc_std", "client_acc_p10", "client_acc_min"), float("nan"))
    return {
        "client_acc_mean": float(acc.mean()),
        "client_acc_std": float(acc.std()),
        "client_acc_p10": float(np.percentile(acc, 10)),
        "client_acc_min": float(acc.min()),
    }
