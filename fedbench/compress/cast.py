"""Casts to 16-bit floats: ``fp16`` (IEEE 754 binary16) and ``bf16`` (bfloat16).

Wire format: the ``d`` values in order, 2 bytes each, little-endian; no header (the receiver
knows ``d``). ``fp16`` rounds to nearest even and overflows to +-inf beyond 65504; ``bf16``
keeps fp32's exponent range with 8 significant bits, rounding to nearest even (torch's
conversion). Both are deterministic: the fast path is ``x.to(dtype).float()``.
"""

from __future__ import annotations

import numpy as np
import torch


class _Cast:
    name = ""
    dtype = torch.float16

    def roundtrip(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, d = x.shape
        return x.to(self.dtype).float(), torch.full((n,), 2 * d, dtype=torch.int64)

    def encode(self, row: torch.Tensor) -> bytes:
        bits = row.detach().cpu().to(self.dtype).view(torch.int16).numpy()
        return bits.astype("<i2").tobytes()

    def decode(self, data: bytes, d: int) -> torch.Tensor:
        if len(data) != 2 * d:
            raise ValueError(f"{self.name}: {len(data)} bytes for d={d}, expected {2 * d}")
        bits = torch.from_numpy(np.frombuffer(data, dtype="<i2").astype(np.int16))
        return bits.view(self.dtype).float()


class FP16(_Cast):
    name = "fp16"
    dtype = torch.float16


class BF16(_Cast):
    name = "bf16"
    dtype = torch.bfloat16
