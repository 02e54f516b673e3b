"""Data poisoning: what Byzantine clients train on (``attack=label_flip`` and ``attack=backdoor``).

The clean training set stays as it is (evaluation and client accuracies read it). The engines
train on a *training view*: the clean samples plus, for a backdoor, triggered copies of the
Byzantine clients' poisoned samples appended at the end, and labels with the Byzantine clients'
labels changed. Only the poisoned samples are copied, so a backdoor on CIFAR-10 with 5 of 100
clients poisoning half their data adds 1,250 images, not a second dataset.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


def flip_labels(y: torch.Tensor, num_classes: int, target: int | None = None) -> torch.Tensor:
    """Label flipping (Biggio et al. 2012; Fang et al. 2020): ``y -> C - 1 - y``, or every label to
    ``target`` when one is given."""
    if target is not None:
        return torch.full_like(y, int(target))
    return num_classes - 1 - y


def add_trigger(x: torch.Tensor, size: int, value: float) -> torch.Tensor:
    """The pixel-pattern backdoor trigger (Gu et al. 2017 "BadNets"; Bagdasaryan et al. 2020): a
    ``size x size`` square of ``value`` in the bottom-right corner of every channel of an image
    ``(N, C, H, W)``; for flat features ``(N, F)`` the last ``size`` features. Returns a copy."""
    out = x.clone()
    if x.dim() == 4:
        out[:, :, -size:, -size:] = value
    elif x.dim() == 2:
        out[:, -size:] = value
    else:
        raise ValueError(f"a trigger needs images (N, C, H, W) or features (N, F), got shape {tuple(x.shape)}")
    return out


def trigger_value(x: torch.Tensor) -> float:
    """The trigger's value: white (255) for uint8 images, else the largest stored value."""
    return 255.0 if x.dtype == torch.uint8 else float(x.max())


class TrainingView(NamedTuple):
    x: torch.Tensor  # the samples the engines gather from
    y: torch.Tensor
    parts: list[np.ndarray]  # each client's rows of x (Byzantine clients' poisoned rows point to copies)
    poisoned: int  # number of samples a Byzantine client trains on altered


def label_flip_view(
    x: torch.Tensor,
    y: torch.Tensor,
    parts: list[np.ndarray],
    byzantine: np.ndarray,
    num_classes: int,
    target: int | None,
) -> TrainingView:
    """Every sample of a Byzantine client carries a flipped label."""
    rows = _rows(parts, byzantine, y.device)
    y2 = y.clone()
    y2[rows] = flip_labels(y[rows], num_classes, target)
    return TrainingView(x, y2, parts, len(rows))


def backdoor_view(
    x: torch.Tensor,
    y: torch.Tensor,
    parts: list[np.ndarray],
    byzantine: np.ndarray,
    target: int,
    size: int,
    fraction: float,
    rng: np.random.Generator,
) -> TrainingView:
    """A share ``fraction`` of every Byzantine client's samples (at least one if it has any,
    chosen by ``rng``) is replaced by a triggered copy labelled ``target``; the copies are appended
    to the training tensors and the client's partition points to them."""
    parts = [p.copy() for p in parts]
    chosen: list[np.ndarray] = []
    start = len(x)
    for c in np.sort(byzantine):
        own = parts[c]
        if len(own) == 0:
            continue
        k = max(1, int(round(fraction * len(own))))
        pos = np.sort(rng.choice(len(own), k, replace=False))
        chosen.append(own[pos])
        own[pos] = np.arange(start, start + k)
        start += k
    if not chosen:
        return TrainingView(x, y, parts, 0)
    src = torch.as_tensor(np.concatenate(chosen), device=x.device)
    xt = add_trigger(x[src], size, trigger_value(x)).to(x.dtype)
    yt = torch.full((len(src),), int(target), dtype=y.dtype, device=y.device)
    return TrainingView(torch.cat([x, xt]), torch.cat([y, yt]), parts, len(src))


def _rows(parts: list[np.ndarray], clients: np.ndarray, device: torch.device) -> torch.Tensor:
    idx = [parts[c] for c in clients if len(parts[c])]
    rows = np.concatenate(idx) if idx else np.zeros(0, np.int64)
    return torch.as_tensor(rows, dtype=torch.int64, device=device)
