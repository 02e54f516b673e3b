"""A client's minibatches for one round: the schedule every engine follows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fedbench.rng import numpy_rng


class Batching(Protocol):
    batch_size: int
    local_epochs: int
    local_steps: int | None


@dataclass(frozen=True)
class Schedule:
    """One client's minibatches for one round: ``index[s, :lengths[s]]`` are the sample ids of
    step ``s``; the rest of the row is padding (``-1``)."""

    index: np.ndarray  # (steps, batch_size) int64
    lengths: np.ndarray  # (steps,) int64
    # (steps, batch_size, 3) int64 crop offsets and flip bit when augmenting; (steps, batch_size, 6)
    # with feature skew: then also the client, the step's noise seed and the slot (fedbench/data/batch.py)
    aug: np.ndarray | None = None

    @property
    def steps(self) -> int:
        return int(self.index.shape[0])


def make_schedule(
    samples: np.ndarray, local: Batching, seed: int, round_: int, client: int, prep: Any = None
) -> Schedule:
    """The minibatches of ``client`` in round ``round_``, drawn from the ``batches`` stream.

    Each pass is a fresh permutation of the client's samples cut into batches of
    ``batch_size``; the batch order depends only on (seed, round, client), never on the engine.
    When ``prep`` (a :class:`~fedbench.data.batch.BatchPrep`) augments, each batch slot's crop
    offsets and flip bit are drawn from the same stream after the permutations, so turning
    augmentation on leaves the batches themselves unchanged; with feature skew, one noise seed per
    step is drawn after those, so noise leaves the batches and their augmentation unchanged.
    """
    n, b = len(samples), local.batch_size
    if n == 0:
        return Schedule(np.zeros((0, b), np.int64), np.zeros(0, np.int64))
    per_epoch = math.ceil(n / b)
    steps = local.local_steps if local.local_steps is not None else local.local_epochs * per_epoch
    epochs = math.ceil(steps / per_epoch)
    rng = numpy_rng(seed, "batches", round_, client)
    index = np.full((epochs * per_epoch, b), -1, np.int64)
    lengths = np.empty(epochs * per_epoch, np.int64)
    for e in range(epochs):
        perm = samples[rng.permutation(n)]
        block = np.full(per_epoch * b, -1, np.int64)
        block[:n] = perm
        index[e * per_epoch : (e + 1) * per_epoch] = block.reshape(per_epoch, b)
        lengths[e * per_epoch : (e + 1) * per_epoch] = b
        lengths[(e + 1) * per_epoch - 1] = n - (per_epoch - 1) * b
    aug = None
    if prep is not None and (prep.augments or getattr(prep, "skew", None) is not None):
        from fedbench.data.batch import draw_sample_info

        aug = draw_sample_info(rng, index.shape, prep, client)[:steps]
    return Schedule(index[:steps], lengths[:steps], aug)
