"""Splitting a labelled dataset across federated clients.

Every partitioner is a pure function of ``(labels, num_clients, ..., rng)`` drawing randomness only from
``rng`` and returns ``num_clients`` disjoint, ascending int64 index arrays into ``labels``. Some leave
samples unused (``dirichlet_client``, ``shards``' remainder, ``classes_per_client``'s unheld labels);
docs/partitions.md defines each one. Every option also has the feature-skew keys ``noise`` and
``rotation`` (:mod:`fedbench.partition.feature`), which the batch function applies, not the partitioner.
"""

from .base import PartitionError, partition_stats
from .classes import classes_per_client
from .dirichlet import dirichlet_per_class, dirichlet_per_client
from .feature import FEATURE_KEYS, split_options
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
    "feature": iid,  # IID labels; the feature skew itself is applied per batch (fedbench/data/skew.py)
}

__all__ = [
    "FEATURE_KEYS",
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
    "split_options",
]
