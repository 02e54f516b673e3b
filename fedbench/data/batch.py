"""From stored samples to model inputs: the one batch function every engine and the evaluation use.

Datasets keep their samples as stored: images as uint8 ``(N, C, H, W)`` (CIFAR-10's 50,000
training images take 150 MB as uint8, 600 MB as float32), token ids as int64, features as
float32. A :class:`BatchPrep` turns a gathered minibatch into the model's input:

1. ``x.float() * scale`` (``scale = 1/255`` for uint8 images, so pixels lie in [0, 1]);
2. ``(x - mean[c]) / std[c]`` per channel ``c`` (the dataset's documented statistics);
3. training only, when the dataset's ``augment`` asks for it: random crop with zero padding
   (``crop_padding = p``: pad every side by ``p`` pixels of value 0 *after* step 1, as
   torchvision's ``RandomCrop(padding=p)`` pads the raw image with black, then take the
   ``H x W`` window at offset ``(dy, dx)``, each in ``[0, 2p]``), then horizontal flip.

The random crop offsets and flips are drawn with the minibatches, from the ``batches`` stream
keyed by (seed, round, client) (:func:`fedbench.engine.schedule.make_schedule`), so every engine
sees the same augmented batches and a run is deterministic.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BatchPrep:
    scale: float = 1.0
    mean: tuple[float, ...] | None = None  # per channel (dim 1 of the batch)
    std: tuple[float, ...] | None = None
    crop_padding: int = 0
    hflip: bool = False

    @property
    def augments(self) -> bool:
        return self.crop_padding > 0 or self.hflip

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.mean is None and not self.augments

    def __call__(self, x: torch.Tensor, aug: torch.Tensor | None = None) -> torch.Tensor:
        """Model inputs for the stored samples ``x`` ``(B, ...)``; ``aug`` ``(B, 3)`` int64 holds
        each sample's crop offsets ``(dy, dx)`` and flip bit (training batches only)."""
        if x.dtype in (torch.int64, torch.int32):  # token ids: the model embeds them
            return x
        if self.identity and x.dtype == torch.float32:
            return x
        x = x.float()
        if self.scale != 1.0:
            x = x * self.scale
        if self.mean is not None:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            x = (x - _on_device(self.mean, x.device).view(shape)) / _on_device(self.std, x.device).view(shape)
        if aug is not None and self.augments:
            x = augment(x, aug, self.crop_padding, self.hflip)
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


def draw_augmentation(rng, shape: tuple[int, int], padding: int, hflip: bool):
    """Crop offsets ``(dy, dx)`` uniform in ``[0, 2 * padding]`` and flip bits (probability 1/2),
    one triple per batch slot ``shape = (steps, batch_size)``, from ``rng``."""
    import numpy as np

    out = np.zeros((*shape, 3), np.int64)
    if padding > 0:
        out[..., :2] = rng.integers(0, 2 * padding + 1, size=(*shape, 2))
    if hflip:
        out[..., 2] = rng.integers(0, 2, size=shape)
    return out
