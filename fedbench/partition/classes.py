"""Quantity-based label imbalance: every client holds ``k`` labels (NIID-Bench ``noniid-#label{k}``, ``#C=k``).

Li, Diao, Chen & He 2022, "Federated Learning on Non-IID Data Silos: An Experimental Study" (ICDE;
arXiv:2102.02079), Sec. IV-A; code: github.com/Xtra-Computing/NIID-Bench, ``utils.py``,
``partition_data``, branch ``noniid-#label``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedbench.registry import integer, option, register

from .base import PartitionError, check_int, check_labels, class_pools
from .feature import FeatureSkewOptions


@register("partition", "classes_per_client")
@dataclass
class ClassesPerClientConfig(FeatureSkewOptions):
    name: str = "classes_per_client"
    k: int = option(2, integer(1))


def classes_per_client(labels: np.ndarray, num_clients: int, rng: np.random.Generator, k: int = 2) -> list[np.ndarray]:
    """Each client holds ``k`` distinct labels; each label is split equally among the clients holding it.

    Definition (NIID-Bench's), with ``c_0 < ... < c_{K-1}`` the labels present in ``labels``:

    1. labels to clients: client ``i = 0, 1, ...`` in turn gets label ``c_{i mod K}`` and ``k - 1``
       further labels drawn uniformly without replacement from the other ``K - 1``
       (``rng.choice(others, k - 1, replace=False)``; NIID-Bench redraws ``random.randint(0, K-1)``
       until it has ``k`` distinct labels, which gives the same uniformly random subset);
    2. samples to clients: for each label ``c_j`` in ascending order that some client holds,
       ``rng.permutation`` of its sample indices is cut by ``np.array_split`` into as many pieces as
       it has holders, and the holders, in ascending client order, get the pieces in order. So every
       sample of a held label is used; piece sizes differ by at most one, the first ``n_c mod h_c``
       holders getting the one extra sample.

    A label no client holds (possible only when ``num_clients < K``) is left unused: its samples go to
    nobody. (NIID-Bench calls ``np.array_split(idx, 0)`` there, which
    raises.) A client holds exactly ``k`` labels with at least one sample each unless one of its
    labels has fewer samples than holders, in which case the last holders get empty pieces.
    ``k = K`` gives every client every label, split equally, as NIID-Bench's ``noniid-#label10`` on
    10-class data.

    Raises :class:`PartitionError` when ``k`` exceeds the number of labels present.
    """
    labels = check_labels(labels)
    num_clients = check_int("num_clients", num_clients, 1)
    k = check_int("k", k, 1)
    classes, pools = class_pools(labels)
    num_classes = classes.size
    if k > num_classes:
        raise PartitionError(
            f"k={k} labels per client, but the labels hold only {num_classes} classes; use k <= {num_classes}"
        )
    holders: list[list[int]] = [[] for _ in range(num_classes)]
    everyone = np.arange(num_classes)
    for i in range(num_clients):
        first = i % num_classes
        holders[first].append(i)
        if k > 1:
            for c in rng.choice(np.delete(everyone, first), size=k - 1, replace=False):
                holders[int(c)].append(i)
    chunks: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for pool, held_by in zip(pools, holders):
        if not held_by:
            continue
        for client, piece in zip(held_by, np.array_split(rng.permutation(pool), len(held_by))):
            chunks[client].append(piece)
    # every client holds k >= 1 labels, so it has at least one (possibly empty) piece
    return [np.sort(np.concatenate(c)).astype(np.int64, copy=False) for c in chunks]
