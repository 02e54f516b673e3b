"""From stored samples to model inputs: the one batch function every engine and the evaluation use.

Datasets keep their samples as stored: images as uint8 ``(N, C, H, W)`` (CIFAR-10's 50,000
training images take 150 MB as uint8, 600 MB as float32), token ids as int64, features as
float32. A :class:`BatchPrep` turns a gathered minibatch into the model's input:

1. ``x.float() * scale`` (``scale = 1/255`` for uint8 images, so pixels lie in [0, 1]);
2. training only, when the dataset's ``augment`` asks for it: random crop with zero padding
   (``crop_padding = p``: pad every side by ``p`` pixels of value 0, black, as torchvision's
   ``RandomCrop(padding=p)`` pads the raw image, then take the ``H x W`` window at offset
   ``(dy, dx)``, each in ``[0, 2p]``), then horizontal flip;
3. ``(x - mean[c]) / std[c]`` per channel ``c`` (the dataset's documented statistics), so a
   padded pixel becomes ``-mean[c] / std[c]``, as in torchvision's ``RandomCrop``, ..., ``Normalize``.

With feature skew on (``partition.noise``, ``partition.rotation``; :mod:`fedbench.data.skew`),
training batches are also rotated by their client's angle right after step 1 and get their
client's Gaussian noise last. The order is therefore: scale, rotate, crop, flip, normalise, noise.

The random crop offsets and flips, and the noise seeds, are drawn with the minibatches, from the
``batches`` stream keyed by (seed, round, client) (:func:`fedbench.engine.schedule.make_schedule`),
and travel with each sample as its row of ``aug`` (``(B, 3)``: ``dy, dx, flip``; ``(B, 6)`` with
feature skew: ``dy, dx, flip, client, step seed, slot``), so every engine sees the same batches
and a run is deterministic. Evaluation calls the function without ``aug``: clean inputs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from fedbench.data.skew import FeatureSkew

SKEW = 3  # first column of ``aug`` that feature skew reads (client, step seed, slot)


@dataclass(frozen=True)
class BatchPrep:
    scale: float = 1.0
    mean: tuple[float, ...] | None = None  # per channel (dim 1 of the batch)
    std: tuple[float, ...] | None = None
    crop_padding: int = 0
    hflip: bool = False
    skew: FeatureSkew | None = None  # per-client feature skew of training batches (None: off)

    @property
    def augments(self) -> bool:
        return self.crop_padding > 0 or self.hflip

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.mean is None and not self.augments and self.skew is None

    def __call__(self, x: torch.Tensor, aug: torch.Tensor | None = None) -> torch.Tensor:
        """Model inputs for the stored samples ``x`` ``(B, ...)``; ``aug`` ``(B, 3)`` or ``(B, 6)``
        int64 holds each sample's crop offsets ``(dy, dx)``, flip bit and, with feature skew, its
        client, step seed and slot (training batches only; see the module doc)."""
        if x.dtype in (torch.int64, torch.int32):  # token ids: the model embeds them
            return x
        if self.identity and x.dtype == torch.float32:
            return x
        x = x.float()
        if self.scale != 1.0:
            x = x * self.scale
        skewed = self.skew is not None and aug is not None and aug.shape[-1] > SKEW
        if skewed:
            x = self.skew.rotate(x, aug[:, SKEW:])
        if aug is not None and self.augments:
            x = augment(x, aug, self.crop_padding, self.hflip)
        if self.mean is not None:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            x = (x - _on_device(self.mean, x.device).view(shape)) / _on_device(self.std, x.device).view(shape)
        if skewed:
            x = self.skew.add_noise(x, aug[:, SKEW:], self.std if self.mean is not None else None)
        return x


@functools.lru_cache(maxsize=32)
def _on_device(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """Per-channel constants as a tensor on ``device``, made once, not at every batch."""
    return torch.tensor(values, device=device)


def augment(x: torch.Tensor, aug: torch.Tensor, padding: int, hflip: bool) -> torch.Tensor:
    """Random crop with zero padding, then horizontal flip, per sample (see module doc)."""
    if padding > 0:
        b, c, h, w = x.shape
        padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        rows = aug[:, 0, None] + torch.arange(h, device=x.device)  # (B, H)
        cols = aug[:, 1, None] + torch.arange(w, device=x.device)  # (B, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if hflip:
        flip = aug[:, 2].bool().view(-1, *([1] * (x.dim() - 1)))
        x = torch.where(flip, x.flip(-1), x)
    return x.contiguous()


def draw_sample_info(rng, shape: tuple[int, int], prep: BatchPrep, client: int) -> np.ndarray:
    """Every batch slot's row of ``aug`` (``shape = (steps, batch_size)``): the crop offsets and
    flip bit (:func:`draw_augmentation`), then, with feature skew, the client, a noise seed per
    step drawn from ``rng`` after them (only when some client is noisy) and the slot."""
    out = draw_augmentation(rng, shape, prep.crop_padding, prep.hflip)
    if prep.skew is None:
        return out
    info = np.zeros((*shape, 3), np.int64)
    info[..., 0] = client
    if prep.skew.noisy:
        info[..., 1] = rng.integers(0, 2**63 - 1, size=shape[0], dtype=np.int64)[:, None]
    info[..., 2] = np.arange(shape[1])
    return np.concatenate([out, info], axis=-1)


def draw_augmentation(rng, shape: tuple[int, int], padding: int, hflip: bool):
    """Crop offsets ``(dy, dx)`` uniform in ``[0, 2 * padding]`` and flip bits (probability 1/2),
    one triple per batch slot ``shape = (steps, batch_size)``, from ``rng``."""
    out = np.zeros((*shape, 3), np.int64)
    if padding > 0:
        out[..., :2] = rng.integers(0, 2 * padding + 1, size=(*shape, 2))
    if hflip:
        out[..., 2] = rng.integers(0, 2, size=shape)
    return out
