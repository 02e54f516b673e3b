"""One-pass CPU kernels (numba) of QSGD's and uniform quantisation's fast paths, equal bit for bit
to their torch definitions (``QSGD.reference_roundtrip``, ``Uniform.reference_roundtrip`` in
:mod:`fedbench.compress.quantize`).

On the CPU the torch fast path of QSGD makes about fifteen passes over the ``(n, d)`` batch (abs,
divide, multiply, floor, two subtractions, ceil, add, clamp, copysign, the ``-0`` fix, dequantise,
and the passes of the Elias bit count); the passes, not the arithmetic, are its cost. Here a row is
one loop that reads ``x`` and ``u`` and writes the signed level, then a second over the row, still
in cache, that counts the Elias bits and dequantises. The kernels do the same IEEE fp32 operations
in the same order as the torch code (no fast-math, so no fused multiply-add), so the decoded
values and the byte counts are the same numbers (``tests/test_fused.py`` compares them on random
and edge-case rows). Rows run in parallel on torch's thread count
(:func:`~fedbench.compress.quantize.rows_in_parallel`; the kernels release the GIL); each is
compiled once and cached on disk next to this file. mutmut does not mutate decorated functions:
the equality tests against the mutated torch definitions stand in for it.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from fedbench.compress.quantize import rows_in_parallel


@njit(inline="always")
def _omega_length(n):
    """Bits of the Elias omega codeword of ``n >= 1`` (:func:`fedbench.compress._bits.omega_chain`)."""
    length = 1
    while n > 1:
        digits = 0
        m = n
        while m > 0:
            digits += 1
            m >>= 1
        length += digits
        n = digits - 1
    return length


@njit(nogil=True, cache=True)
def _qsgd_row(x, u, norm, levels, elias, out):
    """QSGD on one row into ``out``: ``(N / s) * sign(x_i) * l_i``; returns the Elias code stream's
    bits (0 unless ``elias``)."""
    s = np.float32(levels)
    scale = norm if norm > 0 else np.float32(1.0)
    zero = np.float32(0.0)
    d = x.shape[0]
    for i in range(d):
        r = np.abs(x[i]) / scale * s
        low = np.floor(r)
        level = min(np.ceil((r - low) - u[i]) + low, s)
        out[i] = np.copysign(level, x[i]) + zero
    step = norm / s
    bits = 0
    prev = -1
    for i in range(d):
        q = out[i]
        if elias and q != 0:
            bits += _omega_length(i - prev) + 1 + _omega_length(np.int64(np.abs(q)))
            prev = i
        out[i] = q * step
    if elias:
        bits += _omega_length(d - prev)
    return bits


@njit(nogil=True, cache=True)
def _uniform_row(x, u, lo, step, top, out):
    """Uniform quantisation of one row into ``out``: ``lo + c_i * step``."""
    t = np.float32(top)
    unit = step if step > 0 else np.float32(1.0)
    for i in range(x.shape[0]):
        r = (x[i] - lo) / unit
        low = np.floor(r)
        code = min(max(np.ceil((r - low) - u[i]) + low, np.float32(0.0)), t)
        out[i] = code * step + lo


def _arrays(x: torch.Tensor, u: torch.Tensor):
    x, u = x.detach().contiguous(), u.detach().contiguous()
    out = torch.empty_like(x)
    return x.numpy(), u.numpy(), out, out.numpy()


def qsgd(x: torch.Tensor, u: torch.Tensor, norm: torch.Tensor, levels: int, elias: bool):
    """Decoded rows ``(n, d)`` and each row's Elias bits ``(n,)`` int64 (zeros unless ``elias``),
    for fp32 CPU rows ``x``, their uniforms ``u`` and norms ``norm`` ``(n, 1)``."""
    xs, us, out, outs = _arrays(x, u)
    norms = norm[:, 0].numpy()
    bits = rows_in_parallel(lambda i: _qsgd_row(xs[i], us[i], norms[i], levels, elias, outs[i]), len(xs))
    return out, torch.tensor(bits, dtype=torch.int64)


def uniform(x: torch.Tensor, u: torch.Tensor, lo: torch.Tensor, step: torch.Tensor, top: int) -> torch.Tensor:
    """Decoded rows ``(n, d)`` for fp32 CPU rows ``x``, their uniforms ``u`` and ``lo``, ``step``
    ``(n, 1)``."""
    xs, us, out, outs = _arrays(x, u)
    los, steps = lo[:, 0].numpy(), step[:, 0].numpy()
    rows_in_parallel(lambda i: _uniform_row(xs[i], us[i], los[i], steps[i], top, outs[i]), len(xs))
    return out
