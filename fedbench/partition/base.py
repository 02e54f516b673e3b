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


def check_real(name: str, value, minimum: float, open_min: bool, hint: str = "") -> float:
    """A finite real ``> minimum`` (``open_min``) or ``>= minimum``, as float, or raise :class:`PartitionError`."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > minimum if open_min else value >= minimum
    if not ok:
        bound = f"{'>' if open_min else '>='} {minimum:g}"
        raise PartitionError(f"{name} must be a finite number {bound}, got {value!r}{hint}")
    return float(value)


def class_pools(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Present class ids (ascending) and, for each, its sample indices (ascending)."""
    counts = np.bincount(labels) if labels.size else np.zeros(0, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    pools = np.split(order, np.cumsum(counts)[:-1])
    classes = np.flatnonzero(counts)
    return classes, [pools[k] for k in classes]


def cut_sizes(q: np.ndarray, total: int) -> np.ndarray:
    """Integer sizes summing to ``total`` from proportions ``q`` (rows of a 1-D or 2-D array), NIID-Bench style:
    cut points ``floor(cumsum(q) * total)`` without the last, clipped to ``total``; the last part takes the rest."""
    cuts = np.minimum((np.cumsum(q, axis=-1) * total).astype(np.int64)[..., :-1], total)
    return np.diff(cuts, axis=-1, prepend=0, append=total)


def check_min_size(min_size: int, num_clients: int, n: int) -> None:
    """``min_size`` samples for each of ``num_clients`` clients must fit in ``n`` samples."""
    if min_size * num_clients > n:
        raise PartitionError(
            f"cannot give each of num_clients={num_clients} clients min_size={min_size} samples from only "
            f"{n} labels; use fewer clients or a smaller min_size"
        )


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

    Heterogeneity statistics (top-level keys, so that ``summary.json``'s ``partition`` block and
    ``fedbench.analysis.load_runs``' ``partition_stats.<key>`` columns carry them as plain numbers):

    - ``tv_mean`` / ``tv_max`` = mean / max over non-empty clients of the total-variation distance
      ``0.5 * sum_k |f_ik - p_k|`` between the client's label distribution and the global one,
      ``p_k = count of class k in labels / len(labels)``: the global distribution is that of *all*
      ``labels`` passed in (the whole training set), not only of the samples the partition assigned.
      0 for a client with the global mix; ``1 - p_k`` for a client holding only class ``k``.
    - ``effective_classes_mean`` = mean over non-empty clients of ``exp(entropy_i)`` (entropy in nats,
      as above): the number of equally frequent classes with the same entropy; 1 for a single-class
      client, ``num_classes`` for a perfectly balanced one.
    - ``size_cv`` = ``size_std / size_mean`` over all clients (population std); 0 for equal sizes.
    - ``size_gini`` = Gini coefficient of the client sizes, the mean absolute difference over all
      ordered pairs divided by twice the mean: ``sum_i sum_j |s_i - s_j| / (2 N^2 mean)``; 0 for
      equal sizes, ``(N - 1) / N`` when one client holds everything.

    Empty clients are left out of the per-client means and maxima (their label distribution is
    undefined); when every client is empty, or there are none, those are 0.0, and so are ``size_cv``
    and ``size_gini`` when no client holds a sample.
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
    global_p = np.bincount(labels, minlength=num_classes) / labels.size if labels.size else np.zeros(num_classes)
    tv = 0.5 * np.abs(frac - global_p).sum(axis=1)
    total = int(sizes.sum())
    n_clients = sizes.size
    # sum_i sum_j |s_i - s_j| = 2 sum_i (2i - N - 1) s_(i), with s_(1) <= ... <= s_(N)
    ranks = 2 * np.arange(1, n_clients + 1) - n_clients - 1
    gini = float((ranks * np.sort(sizes)).sum() / (n_clients * total)) if total else 0.0

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
        "tv_mean": _mean(tv),
        "tv_max": float(tv.max()) if tv.size else 0.0,
        "effective_classes_mean": _mean(np.exp(entropy)),
        "size_cv": float(sizes.std() / sizes.mean()) if total else 0.0,
        "size_gini": gini,
    }
