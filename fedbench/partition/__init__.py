"""Splitting a labelled dataset across federated clients.

Every partitioner is a pure function of ``(labels, num_clients, ..., rng)`` drawing randomness only from
``rng`` and returns ``num_clients`` disjoint, ascending int64 index arrays into ``labels``. Some leave
samples unused (``dirichlet_client``, ``shards``' remainder, ``classes_per_client``'s unheld labels);
docs/partitions.md defines each one.
"""

from .base import PartitionError, partition_stats
from .classes import classes_per_client
from .dirichlet import dirichlet_per_class, dirichlet_per_client
from .iid import iid
from .natural import natural
from .quantity import quantity
from .shards import shards

PARTITIONERS = {
    "iid": iid,
    "dirichlet_class": dirichlet_per_class,
    "dirichlet_client": dirichlet_per_client,
    "shards": shards,
    "classes_per_client": classes_per_client,
    "quantity": quantity,
    "natural": natural,
}

__all__ = [
    "PARTITIONERS",
    "PartitionError",
    "classes_per_client",
    "dirichlet_per_class",
    "dirichlet_per_client",
    "iid",
    "natural",
    "partition_stats",
    "quantity",
    "shards",
]
