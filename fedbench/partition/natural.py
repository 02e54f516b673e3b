"""The dataset's own clients: FedProx's synthetic devices, LEAF's writers and speakers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedbench.registry import one_of, option, options, register

from .base import PartitionError, check_int, check_labels
from .feature import FeatureSkewOptions


@register("partition", "natural")
@dataclass
class NaturalConfig(FeatureSkewOptions):
    name: str = "natural"
    select: str = option("first", one_of("first", "random"))

    def check(self, run: Any) -> str | None:
        """A dataset with natural clients declares ``natural_clients`` on its config class: their
        number, or None when only its files know it (then :func:`natural` checks it)."""
        if not hasattr(run.dataset, "natural_clients"):
            allowed = [n for n, e in options("dataset").items() if hasattr(e.schema, "natural_clients")]
            return (
                f"partition=natural: dataset={run.dataset.name} has no natural clients; "
                f"allowed with: {', '.join(allowed)}"
            )
        count = run.dataset.natural_clients
        if count is not None and run.num_clients > count:
            return (
                f"num_clients={run.num_clients}: {run.dataset.name} has {count} natural clients; "
                f"allowed: 1 <= num_clients <= {count}"
            )
        return None


def natural(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, groups: np.ndarray, select: str = "first"
) -> list[np.ndarray]:
    """Client ``i`` holds every sample of the ``i``-th chosen natural client.

    ``groups[j]`` is the natural client (device, writer, speaker) of sample ``j``, numbered
    ``0..G-1`` in the dataset's order. ``select="first"`` chooses natural clients ``0..N-1``;
    ``"random"`` chooses ``N`` of the ``G`` uniformly without replacement (``rng.choice``), kept in
    ascending order. The samples of natural clients not chosen are left unused. ``N > G`` is an
    error naming ``G``.
    """
    labels = check_labels(labels)
    num_clients = check_int("num_clients", num_clients, 1)
    groups = np.asarray(groups, dtype=np.int64)
    if groups.shape != labels.shape:
        raise PartitionError(f"groups has shape {groups.shape}, labels {labels.shape}; one group id per sample")
    available = int(groups.max()) + 1 if groups.size else 0
    if num_clients > available:
        raise PartitionError(
            f"num_clients={num_clients}: the dataset has {available} natural clients; "
            f"allowed: 1 <= num_clients <= {available}"
        )
    if select == "first":
        chosen = np.arange(num_clients)
    elif select == "random":
        chosen = np.sort(rng.choice(available, num_clients, replace=False))
    else:
        raise PartitionError(f"select={select!r}: allowed: first, random")
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(available + 1))
    return [np.sort(order[bounds[g] : bounds[g + 1]]).astype(np.int64) for g in chosen]
