"""Scaled sign (Karimireddy et al. 2019, "Error feedback fixes SignSGD and other gradient compression
schemes", EF-signSGD's compressor): ``C(x) = (||x||_1 / d) * sign(x)``.

``sign(0) = +1`` here: one bit per coordinate has no room for a zero (the authors' code uses
``torch.sign``, which sends 0 to 0 and so is not a 1-bit message). ``||x||_1`` is accumulated in fp64,
divided by ``d`` and rounded to the fp32 scale ``a`` that is sent; ``C(x)_i = -a`` if ``x_i < 0``
else ``a``. Deterministic and biased.

Wire format (little-endian): ``a`` as fp32 (4 bytes), then ``d`` sign bits (1 = negative),
bit ``i % 8`` (least significant first) of byte ``i // 8``, zero padding. Bytes: ``4 + ceil(d / 8)``.
"""

from __future__ import annotations

import numpy as np
import torch

from fedbench.compress._bits import as_float, pack_uints, unpack_uints


def signs(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``-scale`` where ``x < 0``, else ``+scale`` (``-0.0`` and NaN count as positive), fp32, with
    ``scale`` broadcasting against ``x``; as ``scale - 2 scale [x < 0]``, exact in floating point,
    and much faster on the CPU than ``torch.where`` on a mask."""
    return as_float(x < 0).mul_(-2 * scale).add_(scale)


class ScaledSign:
    name = "scaled_sign"
    stochastic = False

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs().double().sum(1, keepdim=True) / x.shape[1]).float()

    def roundtrip(self, x: torch.Tensor, rand: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.float()
        n, d = x.shape
        scale = self.scale(x)
        return signs(x, scale), torch.full((n,), 4 + -(-d // 8), dtype=torch.int64)

    def encode(self, row: torch.Tensor, rand: torch.Tensor | None = None) -> bytes:
        row = row.detach().cpu().float().view(1, -1)
        return self.scale(row).numpy().astype("<f4").tobytes() + pack_uints((row[0] < 0).numpy(), 1)

    def decode(self, data: bytes, d: int, rand: torch.Tensor | None = None) -> torch.Tensor:
        if len(data) < 4:
            raise ValueError("scaled_sign: message shorter than its header")
        scale = np.frombuffer(data, "<f4", 1).astype(np.float32)
        if not (np.isfinite(scale[0]) and scale[0] >= 0):
            raise ValueError(f"scaled_sign: scale {scale[0]}, expected a finite number >= 0")
        negative = torch.from_numpy(unpack_uints(data[4:], d, 1, self.name).astype(bool)).view(1, d)
        scale = torch.from_numpy(scale).view(1, 1)
        return torch.where(negative, -scale, scale)[0]


class MajoritySign:
    """signSGD with majority vote (Bernstein, Zhao, Azizzadenesheli & Anandkumar 2019, "signSGD with
    majority vote is communication efficient and fault tolerant"): each client sends ``sign(x)``,
    one bit per coordinate (``sign(0) = +1`` as in :class:`ScaledSign`), and the server takes the
    elementwise majority, ``scale * sign(sum_i sign(x_i))`` (a tie gives 0), unweighted.

    The decoded rows are the ``+-1`` signs; :meth:`vote` is the server's rule (the round's
    ``aggregate`` stage uses it in place of the aggregator). Wire format: ``d`` sign bits (1 =
    negative), bit ``i % 8`` of byte ``i // 8``, zero padding; no header. Bytes: ``ceil(d / 8)``.
    """

    name = "sign_majority"
    stochastic = False

    def __init__(self, scale: float):
        self.scale = scale

    def roundtrip(self, x: torch.Tensor, rand: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        n, d = x.shape
        one = torch.ones((), dtype=torch.float32, device=x.device)
        return signs(x, one), torch.full((n,), -(-d // 8), dtype=torch.int64)

    def encode(self, row: torch.Tensor, rand: torch.Tensor | None = None) -> bytes:
        return pack_uints((row.detach().cpu().float() < 0).numpy(), 1)

    def decode(self, data: bytes, d: int, rand: torch.Tensor | None = None) -> torch.Tensor:
        negative = torch.from_numpy(unpack_uints(data, d, 1, self.name).astype(bool))
        return torch.where(negative, -1.0, 1.0)

    def vote(self, signs: torch.Tensor) -> torch.Tensor:
        """``scale * sign(sum_i s_i)`` over the decoded rows ``signs`` ``(n, d)``."""
        return self.scale * torch.sign(signs.sum(0))
