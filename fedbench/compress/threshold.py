"""Threshold sparsification: ``C(x)_i = x_i`` if ``|x_i| >= threshold``, else 0.

The sparsity rule of Strom (2015, "Scalable distributed DNN training using commodity GPU cloud
computing"), without his quantisation of the kept values to +-threshold: values go in fp32. The
number kept, ``k``, varies per row from 0 to ``d``; ``threshold = 0`` keeps every entry (zeros too).
Deterministic.

Wire format (little-endian), the layout of :mod:`fedbench.compress.topk` with ``varint`` indices:

1. ``k`` as uint32 (4 bytes);
2. the kept indices, ascending: the first index, then each gap ``i_j - i_{j-1} - 1``, each an
   unsigned LEB128 varint;
3. the ``k`` kept values in the same order, fp32.

Bytes per row: ``4 + sum_j varint_len(gap_j) + 4 k``.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import torch

from fedbench.compress._bits import as_float, flat_distances, flat_nonzero, row_sum
from fedbench.compress.topk import decode_varints, encode_varint, varint_lengths


def sparse_bytes(flat: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """Bytes per row of the sparse message above for the kept entries of an ``(n, d)`` batch, given
    by their ascending row-major flat indices ``flat``."""
    rows, dist, _ = flat_distances(flat, n, d)
    return 4 + row_sum(rows, varint_lengths(dist - 1) + 4, n)


def encode_sparse(idx: torch.Tensor, values: torch.Tensor) -> bytes:
    gaps = torch.diff(idx, prepend=idx.new_tensor([-1])) - 1
    index = b"".join(encode_varint(int(g)) for g in gaps)
    return struct.pack("<I", idx.numel()) + index + values.numpy().astype("<f4").tobytes()


def decode_sparse(data: bytes, d: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Ascending indices and fp32 values of a sparse message; ``ValueError`` unless well formed."""
    if len(data) < 4:
        raise ValueError(f"{name}: message shorter than its header")
    (k,) = struct.unpack_from("<I", data, 0)
    if k > d:
        raise ValueError(f"{name}: k={k} entries for d={d}")
    gaps, pos = decode_varints(data, k, 4)
    if max(gaps, default=0) >= d or len(data) != pos + 4 * k:
        raise ValueError(f"{name}: message of {len(data)} bytes does not hold k={k} entries for d={d}")
    idx = np.cumsum(np.asarray(gaps, dtype=np.int64) + 1) - 1
    if k and idx[-1] >= d:
        raise ValueError(f"{name}: index {idx[-1]} out of range for d={d}")
    return idx, np.frombuffer(data, "<f4", k, pos).astype(np.float32)


def scatter_row(idx: np.ndarray, values: np.ndarray, d: int) -> torch.Tensor:
    out = torch.zeros(d)
    out[torch.from_numpy(idx)] = torch.from_numpy(values)
    return out


class Threshold:
    name = "threshold"
    stochastic = False

    def __init__(self, threshold: float):
        if not (math.isfinite(threshold) and threshold >= 0):
            raise ValueError(f"threshold: threshold={threshold}, expected a finite number >= 0")
        self.threshold = float(threshold)

    def roundtrip(self, x: torch.Tensor, rand: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.float()
        n, d = x.shape
        keep = x.abs() >= self.threshold
        # x * keep is far faster on the CPU than torch.where on the mask; + 0.0 turns the -0 of a
        # dropped negative entry into 0 (a kept entry is non-zero when the threshold is)
        out = x * as_float(keep) + 0.0 if self.threshold > 0 else x.clone()
        if bool(torch.isnan(out.sum())):  # a NaN is never kept, but NaN * 0 is NaN
            out = torch.where(keep, x, 0.0)
        return out, sparse_bytes(flat_nonzero(keep).to(x.device), n, d).cpu()

    def encode(self, row: torch.Tensor, rand: torch.Tensor | None = None) -> bytes:
        row = row.detach().cpu().float()
        idx = torch.nonzero(row.abs() >= self.threshold).squeeze(1)
        return encode_sparse(idx, row[idx])

    def decode(self, data: bytes, d: int, rand: torch.Tensor | None = None) -> torch.Tensor:
        return scatter_row(*decode_sparse(data, d, self.name), d)
