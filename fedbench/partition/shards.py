"""McMahan et al. 2017's pathological non-IID split: label-sorted shards, a few per client.

McMahan, Moore, Ramage, Hampson & Agüera y Arcas 2017, "Communication-Efficient Learning of Deep
Networks from Decentralized Data" (AISTATS; arXiv:1602.05629), Sec. 3, MNIST "pathological non-IID":
sort the data by digit label, divide it into 200 shards of size 300 and give each of 100 clients 2
shards, so most clients see only two digits. Here the shard count is ``num_clients *
shards_per_client`` and the shard size ``n // (num_clients * shards_per_client)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedbench.registry import integer, option, register

from .base import PartitionError, check_int, check_labels
from .feature import FeatureSkewOptions


@register("partition", "shards")
@dataclass
class ShardsConfig(FeatureSkewOptions):
    name: str = "shards"
    shards_per_client: int = option(2, integer(1))


def shards(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, shards_per_client: int = 2
) -> list[np.ndarray]:
    """Sort by label, cut into ``S = num_clients * shards_per_client`` equal shards, deal them out at random.

    Definition, with ``n = len(labels)``, ``s = shards_per_client`` and shard size ``m = n // S``:

    1. ``pi = rng.permutation(n)``; the last ``r = n - S * m`` entries of ``pi`` (``r < S``, a uniformly
       random subset of the samples) are left unused, so that every shard has exactly ``m`` samples;
    2. the kept ``pi[:S * m]`` are sorted by label with a stable sort, so samples of one label sit
       together in random order; consecutive blocks of ``m`` are shards ``0 .. S-1``;
    3. ``sigma = rng.permutation(S)``; client ``i`` gets shards ``sigma[i*s : (i+1)*s]``, i.e. ``s``
       shards drawn uniformly without replacement, as the reference implementations do.

    A shard may straddle two labels, and a client's shards may share a label, so a client holds
    between 1 and ``2 * s`` labels (mostly ``s`` when ``m`` is small against the class sizes). Every
    client has exactly ``s * m`` samples. Ties are broken by the random permutation, not by index or
    by ``np.argsort``'s default unstable sort as in the reference implementations (its tie order can
    differ between numpy versions and CPUs): which labels a shard holds is the same either way, and
    the result depends only on ``rng``, not on the order the dataset is stored in.

    Raises :class:`PartitionError` when ``S > n`` (shards would be empty).
    """
    labels = check_labels(labels)
    num_clients = check_int("num_clients", num_clients, 1)
    per_client = check_int("shards_per_client", shards_per_client, 1)
    n = labels.size
    num_shards = num_clients * per_client
    if num_shards > n:
        raise PartitionError(
            f"num_clients={num_clients} x shards_per_client={per_client} = {num_shards} shards, but there are "
            f"only {n} samples, so shards would be empty; use fewer clients or fewer shards per client"
        )
    size = n // num_shards
    kept = rng.permutation(n)[: num_shards * size]
    by_label = kept[np.argsort(labels[kept], kind="stable")].reshape(num_shards, size)
    dealt = rng.permutation(num_shards).reshape(num_clients, per_client)
    return [np.sort(by_label[ids].ravel()).astype(np.int64, copy=False) for ids in dealt]
