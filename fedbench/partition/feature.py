"""Feature skew: per-client Gaussian noise and rotation, keys of every partition option.

Every partition option inherits :class:`FeatureSkewOptions`, so ``partition.noise`` and
``partition.rotation`` compose with any label or quantity skew (``partition=dirichlet_class
partition.noise=0.1``). ``partition=feature`` is the ``iid`` split with ``noise=0.1``: NIID-Bench's
noise-based feature imbalance (Li, Diao, Chen & He 2022, "Federated Learning on Non-IID Data
Silos: An Experimental Study", ICDE, Sec. IV-B; run there as ``--partition=homo --noise=0.1``).

Client ``i`` of ``N`` (``i = 0 .. N-1``) gets the fraction ``t_i = i / (N - 1)`` (``t_0 = 0`` when
``N = 1``) of each maximum:

- ``sigma_i = noise * t_i``: NIID-Bench's code (``experiments.py``: ``noise_level = args.noise /
  (args.n_parties - 1) * net_id``, used as the standard deviation of ``AddGaussianNoise``), so client
  0 is clean and client ``N-1`` gets ``noise``. (The paper's text writes ``Gau(sigma * i / N)``
  and calls it a variance; the code, which produced its numbers, is followed here.)
- ``angle_i = rotation * t_i`` degrees, counter-clockwise as displayed (images only), as in
  "rotated MNIST" domains: ``rotation=270`` with 4 clients gives 0, 90, 180 and 270 degrees.

Nothing here touches the stored data: the batch function applies both to every training batch
(:mod:`fedbench.data.skew`), with fresh noise per (round, client, step, slot) from the ``batches``
stream. Evaluation (test set and client metrics) reads the clean samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedbench.registry import number, option, register

FEATURE_KEYS = ("noise", "rotation")


@dataclass
class FeatureSkewOptions:
    """The feature-skew keys every partition option has (both off by default)."""

    noise: float = option(0.0, number(min=0))
    rotation: float = option(0.0, number(0, 360))


@register("partition", "feature")
@dataclass
class FeatureConfig(FeatureSkewOptions):
    name: str = "feature"
    noise: float = option(0.1, number(min=0))


def client_fractions(num_clients: int) -> np.ndarray:
    """``t_i = i / (N - 1)`` for ``i = 0 .. N-1`` (``[0.0]`` for one client)."""
    return np.arange(num_clients, dtype=np.float64) / max(num_clients - 1, 1)


def split_options(opts: dict) -> tuple[dict, dict]:
    """A partition option's keys as (the partitioner's keywords, the feature-skew keys)."""
    rest = {k: v for k, v in opts.items() if k not in FEATURE_KEYS}
    return rest, {k: opts[k] for k in FEATURE_KEYS if k in opts}
