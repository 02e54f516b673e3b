"""Local training shared by all engines: the minibatch schedule and the SGD rule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fedbench.rng import numpy_rng


@dataclass(frozen=True)
class LocalSGD:
    """Client-side SGD, as ``torch.optim.SGD`` (momentum buffers start at zero each round):

    ``g <- grad + weight_decay * w``;  ``b <- momentum * b + g``;  ``w <- w - lr * b``.

    A client runs ``local_epochs`` passes over its data in minibatches of ``batch_size`` (the last
    batch of an epoch may be smaller), or exactly ``local_steps`` minibatches when that is set
    (passes repeat as needed).
    """

    lr: float
    batch_size: int
    local_epochs: int = 1
    local_steps: int | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass(frozen=True)
class Schedule:
    """One client's minibatches for one round: ``index[s, :lengths[s]]`` are the sample ids of
    step ``s``; the rest of the row is padding (``-1``)."""

    index: np.ndarray  # (steps, batch_size) int64
    lengths: np.ndarray  # (steps,) int64

    @property
    def steps(self) -> int:
        return int(self.index.shape[0])


def make_schedule(samples: np.ndarray, local: LocalSGD, seed: int, round_: int, client: int) -> Schedule:
    """The minibatches of ``client`` in round ``round_``, drawn from the ``batches`` stream.

    Each pass is a fresh permutation of the client's samples cut into batches of
    ``batch_size``; the batch order depends only on (seed, round, client), never on the engine.
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
    return Schedule(index[:steps], lengths[:steps])


def sgd_step_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    bufs: list[torch.Tensor] | None,
    local: LocalSGD,
    scale: list[torch.Tensor] | None = None,
) -> None:
    """In-place :class:`LocalSGD` step over lists of tensors.

    ``scale`` (one tensor per parameter, broadcastable to it, holding ``-lr`` or ``0``) freezes
    the parameters of clients whose schedule has ended; without it every parameter moves.
    Weight decay is applied to the weights or buffers before the gradient is added, never to the
    gradient itself: the same sums in another order, which leaves each gradient read exactly
    once, so a traced step can accumulate it in place (:func:`fedbench.engine.trace.fuse_bmm_updates`).
    """
    wd, lr = local.weight_decay, local.lr
    if local.momentum:
        torch._foreach_mul_(bufs, local.momentum)  # b <- m b + wd w + g
        if wd:
            torch._foreach_add_(bufs, params, alpha=wd)
        torch._foreach_add_(bufs, grads)
        direction = bufs
    else:
        if wd:  # w - lr (g + wd w) = (1 - lr wd) w - lr g
            if scale is None:
                torch._foreach_mul_(params, 1 - lr * wd)
            else:
                torch._foreach_addcmul_(params, params, [s * wd for s in scale])
        direction = grads
    if scale is None:
        torch._foreach_add_(params, direction, alpha=-lr)
    else:
        torch._foreach_addcmul_(params, direction, scale)
