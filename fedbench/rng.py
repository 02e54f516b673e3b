"""Named random streams.

Every source of randomness in a run draws from its own stream, derived from the run seed and the
stream's name (and, where it matters, the round and client). Changing one axis of an experiment
therefore never reshuffles another: a new partition alpha leaves client sampling unchanged, and a
different number of local epochs leaves the initial model unchanged.

Streams:

- ``partition``: which samples each client holds (``fedbench.partition``).
- ``init``: initial global model weights.
- ``sampling``: which clients take part in round ``r`` (keyed by round).
- ``batches``: the minibatch order of client ``c`` in round ``r`` (keyed by round and client id),
  so every engine sees identical batches whatever order they visit clients in.
- ``data``: synthetic dataset generation.
- ``byzantine``: which clients are Byzantine (fixed for the run) and which of their samples a
  data-poisoning attack alters (``fedbench.attack``).
- ``attack``: an attack's own randomness in round ``r`` (keyed by round), e.g. Gaussian noise.
- ``aggregator``: the server's randomness in round ``r`` (keyed by round): bucketing's
  permutation, DnC's coordinate subsets, FLTrust's root-dataset draw (keyed by nothing).
- ``compress``: a stochastic codec's randomness in round ``r`` (keyed by round): random-k's
  indices, QSGD's, uniform's and TernGrad's stochastic rounding.
- ``downlink``: a stochastic downlink codec's randomness for the message that ends round ``r``
  (keyed by round).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

STREAMS = (
    "partition",
    "init",
    "sampling",
    "batches",
    "data",
    "byzantine",
    "attack",
    "aggregator",
    "compress",
    "downlink",
)


def _key(seed: int, stream: str, *keys: int) -> list[int]:
    if stream not in STREAMS:
        raise ValueError(f"unknown RNG stream {stream!r}; known: {', '.join(STREAMS)}")
    return [int(seed), zlib.crc32(stream.encode()), *(int(k) for k in keys)]


def numpy_rng(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """A numpy Generator for ``stream`` keyed by ``seed`` and optional integer ``keys``."""
    return np.random.default_rng(np.random.SeedSequence(_key(seed, stream, *keys)))


def torch_seed(seed: int, stream: str, *keys: int) -> int:
    """A 63-bit integer seed for torch generators, derived like :func:`numpy_rng`."""
    return int(np.random.SeedSequence(_key(seed, stream, *keys)).generate_state(2, np.uint64)[0] >> 1)


def torch_generator(seed: int, stream: str, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(torch_seed(seed, stream, *keys))
