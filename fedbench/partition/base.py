"""Shared pieces of the partitioners: the error type, argument checks and summary statistics."""

from __future__ import annotations

import math
import numbers

import numpy as np


class PartitionError(ValueError):
    """A partition cannot be built from the given arguments; the message says what to change."""


def check_labels(labels) -> np.ndarray:
    """Return ``labels`` as a 1-D int64 array, or raise :class:`PartitionError`."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise PartitionError(f"labels must be a 1-D array of class ids, got shape {arr.shape}; flatten it first")
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise PartitionError(f"labels must have an integer dtype, got {arr.dtype}; cast them with .astype(int)")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise PartitionError(f"labels must be non-negative class ids, found {int(arr.min())}; remap classes to 0..K-1")
    return arr


def check_int(name: str, value, minimum: int) -> int:
    # bool is an Integral; True as a client count is almost certainly a bug.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise PartitionError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (0 < alpha < math.inf):
        raise PartitionError(
            f"alpha must be a finite number > 0, got {alpha!r}; small alpha (e.g. 0.1) means strongly "
            "non-IID clients, large alpha (e.g. 100) nearly IID"
        )
    return float(alpha)


def as_parts(owner_sorted_idx: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """Split a flat index array grouped by client into per-client sorted int64 arrays."""
    return [np.sort(p).astype(np.int64, copy=False) for p in np.split(owner_sorted_idx, np.cumsum(sizes)[:-1])]


def partition_stats(parts: list[np.ndarray], labels: np.ndarray, num_classes: int) -> dict:
    """Summarise a partition; every value is a plain Python type, so the dict is JSON-serialisable.

    - ``sizes[i] = len(parts[i])``; ``size_std`` is the population standard deviation (ddof=0).
    - ``label_hist[i][k]`` = number of samples of class ``k`` held by client ``i``.
    - ``mean_label_entropy`` = mean over non-empty clients of ``-sum_k f_ik log f_ik`` (nats), where
      ``f_ik = label_hist[i][k] / sizes[i]``; ``log(num_classes)`` means perfectly balanced clients.
    - ``empty_clients`` = number of clients holding no sample.
    - ``mean_max_class_fraction`` = mean over non-empty clients of ``max_k f_ik``; 1 means every
      client holds a single class, ``1/num_classes`` perfectly balanced clients.

    Empty clients are left out of both means (their label distribution is undefined); when every
    client is empty, or there are none, the means are 0.0.
    """
    labels = check_labels(labels)
    num_classes = check_int("num_classes", num_classes, 1)
    if labels.size and labels.max() >= num_classes:
        raise PartitionError(
            f"label {int(labels.max())} is out of range for num_classes={num_classes}; pass the dataset's class count"
        )
    hist = np.zeros((len(parts), num_classes), dtype=np.int64)
    for i, part in enumerate(parts):
        hist[i] = np.bincount(labels[np.asarray(part, dtype=np.int64)], minlength=num_classes)
    sizes = hist.sum(axis=1)
    nonempty = sizes > 0
    frac = hist[nonempty] / sizes[nonempty, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(frac > 0, frac * np.log(frac), 0.0)
    entropy = -plogp.sum(axis=1)

    def _mean(x: np.ndarray) -> float:
        return float(x.mean()) if x.size else 0.0

    return {
        "num_clients": len(parts),
        "sizes": [int(s) for s in sizes],
        "label_hist": hist.tolist(),
        "size_mean": _mean(sizes),
        "size_std": float(sizes.std()) if sizes.size else 0.0,
        "size_min": int(sizes.min()) if sizes.size else 0,
        "size_max": int(sizes.max()) if sizes.size else 0,
        "empty_clients": int((sizes == 0).sum()),
        "mean_label_entropy": _mean(entropy),
        "mean_max_class_fraction": _mean(frac.max(axis=1)) if frac.size else 0.0,
    }
