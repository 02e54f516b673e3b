"""One-pass CPU kernels (numba) of QSGD's and uniform quantisation's fast paths, equal bit for bit
to their torch definitions (``QSGD.reference_roundtrip``, ``Uniform.reference_roundtrip`` in
:mod:`fedbench.compress.quantize`), and the CPU fill of the codecs' SplitMix64 uniforms
(:mod:`fedbench.compress.draws`).

On the CPU the torch fast path of QSGD makes about fifteen passes over the ``(n, d)`` batch (abs,
divide, multiply, floor, two subtractions, ceil, add, clamp, copysign, the ``-0`` fix, dequantise,
and the passes of the Elias bit count); the passes, not the arithmetic, are its cost. Here a row is
one loop that reads ``x`` and ``u`` and writes the signed level, then a second over the row, still
in cache, that counts the Elias bits and dequantises. Given a draw's keys (a
:class:`~fedbench.compress.draws.Uniforms`), the first loop computes each uniform where it uses it
(SplitMix64 is a function of the index); given an array of uniforms, it reads them. The kernels do
the same IEEE fp32 operations in the same order as the torch code (no fast-math, so no fused
multiply-add), so the decoded values and the byte counts are the same numbers
(``tests/test_fused.py`` compares them on random and edge-case rows). Rows run in parallel on
torch's thread count (:func:`~fedbench.compress.quantize.rows_in_parallel`; the kernels release the
GIL); each is compiled once per argument type and cached on disk next to this file. mutmut does
not mutate decorated functions: the equality tests against the mutated torch definitions stand in
for it.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, types
from numba.extending import overload

from fedbench.compress import draws
from fedbench.compress.quantize import rows_in_parallel

_GAMMA, _MIX1, _MIX2 = np.uint64(draws.GAMMA), np.uint64(draws.MIX1), np.uint64(draws.MIX2)
_SCALE = np.float32(draws.SCALE)


@njit(inline="always")
def _splitmix_uniform(key, i):
    """``u_i`` of the row with SplitMix64 key ``key`` (:mod:`fedbench.compress.draws`)."""
    z = key + np.uint64(i + 1) * _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    # SplitMix64's last step, z ^ (z >> 31), changes bits 0-32 only, not the 24 kept: skipped
    return np.float32(z >> np.uint64(40)) * _SCALE


def _uniform_at(u, i):
    """The row's ``i``-th uniform: ``u[i]`` for an array, computed for a SplitMix64 key."""
    raise NotImplementedError  # numba-only: the overload below


@overload(_uniform_at, inline="always")
def _uniform_at_impl(u, i):
    if isinstance(u, types.Array):
        return lambda u, i: u[i]
    return lambda u, i: _splitmix_uniform(u, i)


@njit(nogil=True, cache=True)
def _fill_row(key, out):
    for i in range(out.shape[0]):
        out[i] = _splitmix_uniform(key, i)


def fill_uniforms(keys: np.ndarray, d: int) -> torch.Tensor:
    """The uniforms ``(len(keys), d)`` fp32 of the SplitMix64 keys, rows in parallel."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    out = np.empty((len(keys), d), np.float32)
    rows_in_parallel(lambda i: _fill_row(keys[i], out[i]), len(keys))
    return torch.from_numpy(out)


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
        level = min(np.ceil((r - low) - _uniform_at(u, i)) + low, s)
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
        code = min(max(np.ceil((r - low) - _uniform_at(u, i)) + low, np.float32(0.0)), t)
        out[i] = code * step + lo


def _arrays(x: torch.Tensor, u: torch.Tensor | draws.Uniforms):
    """``x``, the per-row uniforms (keys of a draw or rows of an array) and the output, as numpy."""
    x = x.detach().contiguous()
    u = u.keys if isinstance(u, draws.Uniforms) else u.detach().contiguous().numpy()
    out = torch.empty_like(x)
    return x.numpy(), u, out, out.numpy()


def qsgd(x: torch.Tensor, u: torch.Tensor | draws.Uniforms, norm: torch.Tensor, levels: int, elias: bool):
    """Decoded rows ``(n, d)`` and each row's Elias bits ``(n,)`` int64 (zeros unless ``elias``),
    for fp32 CPU rows ``x``, their uniforms ``u`` (a tensor, or a draw computed in the loop) and
    norms ``norm`` ``(n, 1)``."""
    xs, us, out, outs = _arrays(x, u)
    norms = norm[:, 0].numpy()
    bits = rows_in_parallel(lambda i: _qsgd_row(xs[i], us[i], norms[i], levels, elias, outs[i]), len(xs))
    return out, torch.tensor(bits, dtype=torch.int64)


def uniform(
    x: torch.Tensor, u: torch.Tensor | draws.Uniforms, lo: torch.Tensor, step: torch.Tensor, top: int
) -> torch.Tensor:
    """Decoded rows ``(n, d)`` for fp32 CPU rows ``x``, their uniforms ``u`` (as for :func:`qsgd`)
    and ``lo``, ``step`` ``(n, 1)``."""
    xs, us, out, outs = _arrays(x, u)
    los, steps = lo[:, 0].numpy(), step[:, 0].numpy()
    rows_in_parallel(lambda i: _uniform_row(xs[i], us[i], los[i], steps[i], top, outs[i]), len(xs))
    return out
