"""Splitting a labelled dataset across federated clients.

Every partitioner is a pure function of ``(labels, num_clients, ..., rng)`` drawing randomness only from
``rng`` and returns ``num_clients`` disjoint, ascending int64 index arrays into ``labels``.
"""

from .base import PartitionError, partition_stats
from .dirichlet import dirichlet_per_class, dirichlet_per_client
from .iid import iid

PARTITIONERS = {
    "iid": iid,
    "dirichlet_class": dirichlet_per_class,
    "dirichlet_client": dirichlet_per_client,
}

__all__ = [
    "PARTITIONERS",
    "PartitionError",
    "dirichlet_per_class",
    "dirichlet_per_client",
    "iid",
    "partition_stats",
]
