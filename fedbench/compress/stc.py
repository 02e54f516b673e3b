"""Sparse Ternary Compression (Sattler, Wiedemann, Müller & Samek 2019, "Robust and
communication-efficient federated learning from non-i.i.d. data", IEEE TNNLS; STC's Algorithm 1 and
its Golomb position encoding).

Per row ``x`` of length ``d``: the ``k`` entries of largest magnitude are selected as in
:class:`fedbench.compress.topk.TopK` (ties in magnitude to the lower index, a NaN counts as largest;
``k = max(1, round(fraction * d))`` at most ``d``, or ``k`` given), ``mu = (1/k) sum |x_i|`` over
those ``k`` entries (accumulated in fp64, rounded to the fp32 that is sent), and
``C(x)_i = mu * sign(x_i)`` on the selected entries, 0 elsewhere: values in ``{-mu, 0, +mu}``.
``sign(0) = 0``: a zero among the selected entries (a row with fewer than ``k`` non-zeros) still
counts in ``mu`` (the paper's ``1/k``) but decodes to 0 and is not sent. The ``m <= k`` sent
entries are the selected ones with ``x_i != 0`` (NaN included, sent as positive). Deterministic;
no error feedback here (wrap it with :mod:`fedbench.compress.feedback` for STC's residuals).
The same codec is STC's downlink: :mod:`fedbench.compress.downlink` compresses the server's step
with the server's residual and charges a client that sat out the messages it missed (the paper's
caching of partial sums).

**Golomb parameter.** With ``p = k / d`` (the sparsity rate, known to both sides from the codec's
``fraction``/``k`` and ``d``) and ``phi = (1 + sqrt 5) / 2``,
``b = 1 + floor(log2(log(phi - 1) / log(1 - p)))``, clamped to ``b >= 0`` (the formula is negative
for ``p > phi - 1 ~ 0.618`` and undefined at ``p = 1``; ``b = 0`` is plain unary coding).

Wire format, for a row of length ``d`` (known to the receiver, as ``k`` and so ``b`` are):

1. ``mu`` as fp32, little-endian (4 bytes);
2. ``m``, the number of entries sent, as uint32 little-endian (4 bytes): needed because zeros among
   the ``k`` selected entries are not sent;
3. one bit stream (bit ``j`` is bit ``j % 8``, least significant first, of byte ``j // 8``, as in
   :mod:`fedbench.compress._bits`), zero-padded to a whole byte:

   a. for each sent position ``i_1 < ... < i_m`` in order, the gap ``g_j = i_j - i_{j-1} >= 1``
      (with ``i_0 = -1``, so ``g_1 = i_1 + 1``) Golomb coded with divisor ``2**b``: with
      ``q_j = (g_j - 1) >> b`` and ``r_j = (g_j - 1) mod 2**b``, ``q_j`` one bits, a zero bit,
      then ``r_j`` in ``b`` bits, least significant first (the ``_bits`` convention for
      fixed-width fields);
   b. ``m`` sign bits in the same order, 1 = negative.

Bytes per row: ``8 + ceil((sum_j (q_j + 1 + b) + m) / 8)``.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import torch

from fedbench.compress._bits import BitReader, count, flat_distances, row_sum
from fedbench.compress.topk import TopK

PHI = (1 + math.sqrt(5)) / 2


def golomb_parameter(p: float) -> int:
    """``b* = 1 + floor(log2(log(phi - 1) / log(1 - p)))`` for the sparsity rate ``0 < p <= 1``,
    clamped to ``>= 0`` (0 at ``p = 1``)."""
    if not 0 < p <= 1:
        raise ValueError(f"stc: sparsity rate p={p}, expected 0 < p <= 1")
    if p == 1:
        return 0
    return max(0, 1 + math.floor(math.log2(math.log(PHI - 1) / math.log(1 - p))))


class STC:
    name = "stc"
    stochastic = False

    def __init__(self, fraction: float | None = None, k: int | None = None):
        if (fraction is None) == (k is None):
            raise ValueError("stc: give exactly one of fraction and k")
        if fraction is not None and not (math.isfinite(fraction) and fraction > 0):
            raise ValueError(f"stc: fraction={fraction}, expected a finite number > 0")
        if k is not None and k < 1:
            raise ValueError(f"stc: k={k}, expected k >= 1")
        self.fraction, self.k = fraction, k
        self.topk = TopK(fraction=fraction, k=k)

    def k_for(self, d: int) -> int:
        return self.topk.k_for(d)

    def b_for(self, d: int) -> int:
        return golomb_parameter(self.k_for(d) / d)

    def _ternary(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Selected indices ``(n, k)`` ascending, their values, and ``mu`` ``(n, 1)`` fp32."""
        idx = self.topk.select(x)
        vals = x.gather(1, idx)
        mu = (vals.abs().sum(1, keepdim=True, dtype=torch.float64) / idx.shape[1]).float()
        return idx, vals, mu

    def roundtrip(self, x: torch.Tensor, rand: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.float()
        n, d = x.shape
        idx, vals, mu = self._ternary(x)
        sent = vals != 0
        ternary = torch.where(sent, torch.where(vals < 0, -mu, mu), 0.0)
        out = torch.zeros_like(x).scatter_(1, idx, ternary)
        b = self.b_for(d)
        flat = (idx + torch.arange(n, device=idx.device).unsqueeze(1) * d)[sent]  # ascending, row-major
        rows, gaps, _ = flat_distances(flat, n, d)
        bits = row_sum(rows, ((gaps - 1) >> b) + 1 + b, n) + count(sent)
        return out, (8 + torch.div(bits + 7, 8, rounding_mode="floor")).cpu()

    def encode(self, row: torch.Tensor, rand: torch.Tensor | None = None) -> bytes:
        row = row.detach().cpu().float()
        d = row.numel()
        idx, vals, mu = self._ternary(row.view(1, d))
        sent = (vals[0] != 0).numpy()
        pos = idx[0].numpy()[sent]
        negative = (vals[0] < 0).numpy()[sent]
        b = self.b_for(d)
        g = np.diff(pos, prepend=-1) - 1  # g_j - 1
        q, r = g >> b, g & ((1 << b) - 1)
        lengths = q + 1 + b
        starts = np.cumsum(lengths) - lengths
        total = int(lengths.sum())
        # the unary runs: +1 at each start, -1 after the q ones, then a running sum
        edges = np.zeros(total + 1, np.int64)
        np.add.at(edges, starts, 1)
        np.add.at(edges, starts + q, -1)
        bits = np.concatenate([np.cumsum(edges)[:total], negative.astype(np.int64)]).astype(np.uint8)
        if b:
            rem_at = (starts + q + 1)[:, None] + np.arange(b)
            bits[rem_at.ravel()] = ((r[:, None] >> np.arange(b)) & 1).ravel()
        head = mu.numpy().astype("<f4").tobytes() + struct.pack("<I", pos.size)
        return head + np.packbits(bits, bitorder="little").tobytes()

    def decode(self, data: bytes, d: int, rand: torch.Tensor | None = None) -> torch.Tensor:
        if len(data) < 8:
            raise ValueError(f"stc: message of {len(data)} bytes, shorter than its 8-byte header")
        mu = np.frombuffer(data, "<f4", 1).astype(np.float32)
        (m,) = struct.unpack_from("<I", data, 4)
        if mu[0] < 0:
            raise ValueError(f"stc: mu={mu[0]}, expected mu >= 0")
        k = self.k_for(d)
        if m > k:
            raise ValueError(f"stc: m={m} entries above k={k} for d={d}")
        b = self.b_for(d)
        reader = BitReader(data[8:], self.name)
        text, at = reader.text, 0
        pos = np.empty(m, np.int64)
        last = -1
        for j in range(m):
            zero = text.find("0", at)
            if zero < 0 or zero + 1 + b > len(text):
                raise ValueError(f"{self.name}: message ends inside a codeword")
            r = int(text[zero + 1 : zero + 1 + b][::-1], 2) if b else 0
            last += (((zero - at) << b) | r) + 1
            if last >= d:
                raise ValueError(f"{self.name}: position {last} out of range for d={d}")
            pos[j] = last
            at = zero + 1 + b
        if at + m > len(text):
            raise ValueError(f"{self.name}: message ends inside the sign bits")
        negative = np.frombuffer(text[at : at + m].encode("ascii"), np.uint8) == ord("1")
        reader.pos = at + m
        reader.finish()
        mu_t = torch.from_numpy(mu)
        out = torch.zeros(d)
        out[torch.from_numpy(pos)] = torch.where(torch.from_numpy(negative), -mu_t, mu_t)
        return out
