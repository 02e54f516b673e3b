"""IID partition: a uniformly random split into near-equal shards."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedbench.registry import register

from .base import check_int, check_labels
from .feature import FeatureSkewOptions


@register("partition", "iid")
@dataclass
class IIDConfig(FeatureSkewOptions):
    name: str = "iid"


def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Split all sample indices uniformly at random into ``num_clients`` near-equal parts.

    Definition: ``pi = rng.permutation(n)``; client ``i`` gets the ``i``-th chunk of
    ``np.array_split(pi, num_clients)``, sorted. Sizes are ``floor(n/N)`` or ``ceil(n/N)``, so they
    differ by at most one, and every index is used exactly once. This is the IID baseline used by
    McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from Decentralized Data".
    If ``num_clients > len(labels)`` some clients are empty.
    """
    labels = check_labels(labels)
    num_clients = check_int("num_clients", num_clients, 1)
    perm = rng.permutation(labels.size)
    return [np.sort(chunk).astype(np.int64, copy=False) for chunk in np.array_split(perm, num_clients)]
