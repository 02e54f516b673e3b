"""Per-client feature skew applied by the batch function: rotation, then Gaussian noise.

The tables come from the partition's ``noise`` and ``rotation`` keys (:mod:`fedbench.partition.feature`):
client ``i`` of ``N`` has ``sigma_i = noise * i / (N - 1)`` and ``angle_i = rotation * i / (N - 1)``.
A training batch's per-sample info (``aug``, :mod:`fedbench.data.batch`) carries, in columns 3-5,
each row's client, the noise seed of its (round, client, step), drawn from the ``batches`` stream by
:func:`fedbench.engine.schedule.make_schedule`, and its slot in the step's batch. So a row's input
depends only on (seed, round, client, step, slot): every engine, whatever rows it batches together,
feeds the model the same numbers. Client ids outside the tables (FLTrust's server, a virtual client
``N``) are left clean.

- Rotation (images ``(B, C, H, W)``): by ``angle_i`` degrees counter-clockwise as displayed (row 0
  at the top), about the image centre, bilinear, the corners filled with 0 in the scaled space
  (black for uint8 images; the mean for data stored standardised, such as ``digits``). For square
  images a multiple of 90 degrees moves pixels exactly (``torch.rot90``); a non-square image keeps
  its shape, so a quarter turn crops and pads it.
- Noise: ``x + sigma_i * z`` with ``z ~ N(0, I)``, fresh for every (round, step, slot), in the
  scaled units of ``x * scale`` (pixels in [0, 1] for uint8 images, as NIID-Bench adds it after
  ``ToTensor``; the stored units for float features), added after crop and flip, as NIID-Bench's
  ``AddGaussianNoise`` is the last transform. With per-channel normalisation the noise is divided
  by the channel's std, which is the same thing as adding it before normalising. ``z`` is drawn with
  numpy on the CPU (the same numbers on every device; on a GPU each noisy step waits for that copy).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fedbench.partition.feature import client_fractions

CLIENT, SEED, SLOT = 0, 1, 2  # columns of the skew info (aug[:, 3:])


@dataclass(frozen=True)
class FeatureSkew:
    sigma: tuple[float, ...]  # noise std of client i
    angle: tuple[float, ...]  # rotation of client i, degrees counter-clockwise

    @property
    def noisy(self) -> bool:
        return any(s > 0 for s in self.sigma)

    @property
    def rotates(self) -> bool:
        return any(a % 360 != 0 for a in self.angle)

    def rotate(self, x: torch.Tensor, info: torch.Tensor) -> torch.Tensor:
        """Each image of ``x`` ``(B, C, H, W)`` turned by its client's angle (out of place)."""
        if not self.rotates:
            return x
        angle = _table(self.angle, x.device)[info[:, CLIENT].clamp(0, len(self.angle))]
        rows = torch.nonzero(torch.remainder(angle, 360) != 0).flatten()
        if rows.numel() == 0:
            return x
        return x.index_put((rows,), rotate(x[rows], angle[rows]))

    def add_noise(self, x: torch.Tensor, info: torch.Tensor, std: tuple[float, ...] | None) -> torch.Tensor:
        """``x + sigma_i z / std[c]`` (see the module doc); ``z`` from each row's step seed and slot."""
        if not self.noisy:
            return x
        client, seed, slot = info.cpu().numpy().T
        sigma = np.asarray((*self.sigma, 0.0), np.float32)[np.clip(client, 0, len(self.sigma))]
        z = np.zeros((x.shape[0], math.prod(x.shape[1:])), np.float32)
        for s in np.unique(seed[sigma > 0]):
            rows = np.flatnonzero((seed == s) & (sigma > 0))
            # numpy fills in order, so the first k rows of a draw are the same for any larger draw
            draw = np.random.default_rng(int(s)).standard_normal((int(slot[rows].max()) + 1, z.shape[1]), np.float32)
            z[rows] = draw[slot[rows]] * sigma[rows, None]
        noise = torch.from_numpy(z).view(x.shape).to(x.device)
        if std is not None:
            noise = noise / _table(std, x.device)[:-1].view(1, -1, *([1] * (x.dim() - 2)))
        return x + noise


@functools.lru_cache(maxsize=32)
def _table(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """Per-client (or per-channel) constants on ``device``, with a trailing 0 for ids past the end."""
    return torch.tensor((*values, 0.0), dtype=torch.float32, device=device)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` rotated by ``degrees`` ``(B,)`` counter-clockwise about the centre.

    Square images turned by a multiple of 90 degrees go through ``torch.rot90`` (exact); the rest
    are resampled with ``grid_sample`` (bilinear, zeros outside): output pixel ``p`` (centred
    coordinates, y down) reads the input at ``R(-a) p``, ``R(a) = [[cos a, sin a], [-sin a, cos a]]``.
    """
    h, w = x.shape[-2:]
    quarter = torch.remainder(degrees, 360) / 90
    exact = (quarter == quarter.round()) & (h == w)
    out = torch.empty_like(x)
    for k in range(4):
        rows = torch.nonzero(exact & (quarter == k)).flatten()
        if rows.numel():
            out[rows] = torch.rot90(x[rows], k, (-2, -1))
    rows = torch.nonzero(~exact).flatten()
    if rows.numel():
        rad = degrees[rows].double() * (math.pi / 180)
        c, s, zero = rad.cos(), rad.sin(), torch.zeros_like(rad)
        theta = torch.stack([torch.stack([c, -s * h / w, zero], 1), torch.stack([s * w / h, c, zero], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), [len(rows), *x.shape[1:]], align_corners=False)
        out[rows] = F.grid_sample(x[rows], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out


def feature_skew(num_clients: int, noise: float, rotation: float, dataset: str, x: torch.Tensor) -> FeatureSkew | None:
    """The run's skew tables, or None when both keys are 0; ``ValueError`` (one line naming the key)
    when the training inputs ``x`` ``(n, ...)`` cannot take them."""
    if noise == 0 and rotation == 0:
        return None
    shape = tuple(x.shape[1:])
    if not x.dtype.is_floating_point and x.dtype != torch.uint8:
        key, value = ("noise", noise) if noise else ("rotation", rotation)
        raise ValueError(
            f"partition.{key}={value:g}: dataset={dataset} holds {x.dtype} inputs (token ids), which cannot "
            f"be perturbed; allowed: {key}=0"
        )
    if rotation != 0 and len(shape) != 3:
        raise ValueError(
            f"partition.rotation={rotation:g}: rotates images of shape (C, H, W), but dataset={dataset} holds "
            f"inputs of shape {shape}; allowed: rotation=0 (partition.noise works on feature vectors)"
        )
    t = client_fractions(num_clients)
    return FeatureSkew(tuple(float(v) for v in noise * t), tuple(float(v) for v in rotation * t))
