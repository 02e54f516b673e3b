"""Top-k sparsification (Aji & Heafield 2017; Stich et al. 2018 "Sparsified SGD with memory").

``C(x)`` keeps the ``k`` entries of largest magnitude and zeroes the rest. Ties in magnitude go
to the lower index (a stable descending sort of ``|x|``), so the choice is deterministic.
``k = max(1, round(fraction * d))`` when given as a fraction, at most ``d``.

Wire format (little-endian), for one row of length ``d`` (known to the receiver):

1. ``k`` as uint32 (4 bytes);
2. the kept indices, ascending, either
   - ``varint`` (default): the first index, then each gap ``i_j - i_{j-1} - 1``, each as an
     unsigned LEB128 varint (7 bits per byte, high bit = more bytes follow): 1 byte for a gap
     below 128, 2 below 16,384, ...; or
   - ``bitmask``: ``ceil(d / 8)`` bytes, bit ``i % 8`` (least significant first) of byte
     ``i // 8`` set iff index ``i`` is kept;
3. the ``k`` kept values in the same order, fp32 (4 bytes each).

Bytes per row: ``4 + index_bytes + 4 k``.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import torch

from fedbench.compress._bits import count, flat_nonzero

INDEX_CODINGS = ("varint", "bitmask")


def varint_lengths(values: torch.Tensor) -> torch.Tensor:
    """Bytes of the unsigned LEB128 encoding of each non-negative int64 value."""
    length = torch.ones_like(values)
    top = int(values.max()) if values.numel() else 0
    for shift in range(7, 63, 7):
        if top < 1 << shift:  # no value has more 7-bit groups
            break
        length += (values >= (1 << shift)).to(values.dtype)
    return length


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varints(data: bytes, count: int, pos: int) -> tuple[list[int], int]:
    values = []
    for _ in range(count):
        value, shift = 0, 0
        while True:
            if pos >= len(data):
                raise ValueError("topk: message ends inside a varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    return values, pos


def candidates(mag: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A superset of each row's ``k`` largest entries of ``mag`` ``(n, d)`` (non-negative, no NaN),
    as ascending column indices and their values ``(n, c)``, padded with column 0 and value -1;
    or None where a full search is as cheap or the shortcut fails.

    A strided sample of about ``100 d / k`` entries per row gives a level ``t_s`` that about 1.5
    times the expected share of the sample exceeds; the candidates are the entries ``>= t_s``.
    Whenever a row has at least ``k`` of them, its k-th largest value is ``>= t_s``, so every entry
    ``>=`` that value is a candidate and the selection among candidates is exact. With fewer than
    ``k`` (an unlucky sample) or too many (heavy ties), None."""
    n, d = mag.shape
    step = k // 100
    if step < 2 or 8 * k > d:
        return None
    sample = mag[:, ::step]
    expect = sample.shape[1] * k / d
    ks = min(sample.shape[1], math.ceil(1.5 * expect + 3 * math.sqrt(expect) + 4))
    level = torch.topk(sample, ks, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    mask = mag >= level
    per_row = count(mask)
    width = int(per_row.max())
    if bool((per_row < k).any()) or width > 4 * k:
        return None
    flat = flat_nonzero(mask).to(mag.device)
    rows = torch.div(flat, d, rounding_mode="floor")
    start = torch.cumsum(per_row, 0) - per_row
    col = torch.arange(flat.numel(), device=mag.device) - start[rows]
    cols = torch.zeros(n, width, dtype=torch.int64, device=mag.device)
    values = torch.full((n, width), -1.0, dtype=mag.dtype, device=mag.device)
    cols[rows, col] = flat - rows * d
    values[rows, col] = mag.reshape(-1)[flat]
    return cols, values


class TopK:
    name = "topk"

    def __init__(self, fraction: float | None = None, k: int | None = None, index_coding: str = "varint"):
        if (fraction is None) == (k is None):
            raise ValueError("topk: give exactly one of fraction and k")
        if index_coding not in INDEX_CODINGS:
            raise ValueError(f"topk: index_coding={index_coding!r}; allowed: {', '.join(INDEX_CODINGS)}")
        self.fraction, self.k, self.index_coding = fraction, k, index_coding

    def k_for(self, d: int) -> int:
        k = self.k if self.k is not None else round(self.fraction * d)
        return int(min(d, max(1, k)))

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """Ascending indices ``(n, k)`` of each row's ``k`` largest magnitudes (ties: lower index).

        Without sorting the row: ``t`` is the k-th largest magnitude (``torch.topk``, whose order
        among equal values is unspecified, so only its value is used); every entry above ``t`` is
        kept, and the entries equal to ``t`` fill the remaining places from the lowest index up.
        A mask with exactly ``k`` entries per row, read out in row-major order, gives the indices
        already ascending. For speed, ``t`` is searched among *candidates* (:func:`candidates`)
        when there are enough of them, which gives the same ``t`` and the same indices."""
        n, d = x.shape
        k = self.k_for(d)
        mag = x.abs()
        if bool(torch.isnan(mag.sum())):  # a NaN (a nonfinite attack) counts as largest
            mag = torch.nan_to_num(mag, nan=math.inf)
        found = candidates(mag, k)
        cols, values = (None, mag) if found is None else found
        t = torch.topk(values, k, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
        keep = values >= t
        if bool((count(keep) != k).any()):  # more ties at t than places left: the lower indices
            above = values > t
            tied = keep & ~above
            room = k - count(above).unsqueeze(1)
            keep = above | (tied & (torch.cumsum(tied, dim=1, dtype=torch.int32) <= room))
        width = values.shape[1]
        chosen = flat_nonzero(keep).to(x.device).view(n, k) - torch.arange(n, device=x.device).unsqueeze(1) * width
        return chosen if cols is None else cols.gather(1, chosen)

    def index_bytes(self, idx: torch.Tensor, d: int) -> torch.Tensor:
        if self.index_coding == "bitmask":
            return torch.full((idx.shape[0],), math.ceil(d / 8), dtype=torch.int64)
        gaps = torch.diff(idx, dim=1, prepend=torch.full_like(idx[:, :1], -1)) - 1
        return varint_lengths(gaps).sum(1)

    def roundtrip(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, d = x.shape
        idx = self.select(x)
        out = torch.zeros_like(x).scatter_(1, idx, x.gather(1, idx))
        k = idx.shape[1]
        return out, 4 + self.index_bytes(idx.cpu(), d) + 4 * k

    def encode(self, row: torch.Tensor) -> bytes:
        row = row.detach().cpu().float()
        d = row.numel()
        idx = self.select(row.view(1, d))[0]
        head = struct.pack("<I", idx.numel())
        if self.index_coding == "bitmask":
            mask = np.zeros(math.ceil(d / 8) * 8, dtype=np.uint8)
            mask[idx.numpy()] = 1
            index = np.packbits(mask, bitorder="little").tobytes()
        else:
            gaps = torch.diff(idx, prepend=torch.tensor([-1])) - 1
            index = b"".join(encode_varint(int(g)) for g in gaps)
        return head + index + row[idx].numpy().astype("<f4").tobytes()

    def decode(self, data: bytes, d: int) -> torch.Tensor:
        if len(data) < 4:
            raise ValueError("topk: message shorter than its header")
        (k,) = struct.unpack_from("<I", data, 0)
        if k != self.k_for(d):
            raise ValueError(f"topk: k={k} in the message, expected {self.k_for(d)} for d={d}")
        pos = 4
        if self.index_coding == "bitmask":
            nbytes = math.ceil(d / 8)
            bits = np.unpackbits(np.frombuffer(data, np.uint8, nbytes, pos), bitorder="little")[:d]
            idx = np.flatnonzero(bits)
            pos += nbytes
        else:
            gaps, pos = decode_varints(data, k, pos)
            idx = np.cumsum(np.asarray(gaps, dtype=np.int64) + 1) - 1
        if len(idx) != k or len(data) != pos + 4 * k:
            raise ValueError(f"topk: message of {len(data)} bytes does not hold k={k} entries for d={d}")
        values = np.frombuffer(data, "<f4", k, pos)
        out = torch.zeros(d)
        out[torch.from_numpy(idx.astype(np.int64))] = torch.from_numpy(values.copy())
        return out
