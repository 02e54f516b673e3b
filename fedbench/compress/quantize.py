"""Unbiased stochastic quantisers: QSGD, uniform ``b``-bit and TernGrad (``E[C(x)] = x``).

Stochastic rounding: a real ``r`` with ``l = floor(r)`` becomes ``l + 1`` iff ``u < r - l``, else
``l``, for the coordinate's ``u ~ U[0, 1)`` (so ``P(l + 1) = r - l`` and ``E = r``). :meth:`draw`
gives the uniforms ``(n, d)``: a :class:`~fedbench.compress.draws.Uniforms` (SplitMix64, computed
where they are used); ``rand`` may also be an fp32 tensor. Scalars are fp32, little-endian; code streams are
bit-packed as in :mod:`fedbench.compress._bits` (least significant bit first in each byte and in each
fixed-width field, zero padding). Inputs are assumed finite. Row norms are reduced one row at a
time in fp32 (:func:`fedbench.compress._bits.row_norms`), so a row alone and in a batch give the
same message on one machine (another thread count may move a norm by an ulp). On the CPU, QSGD's
and uniform's fast paths (``roundtrip``) run as one-pass kernels (:mod:`fedbench.compress._fused`)
that give the numbers of their torch definitions (``reference_roundtrip``, the path on a GPU) bit
for bit.

**QSGD** (Alistarh et al. 2017, "QSGD: Communication-efficient SGD via gradient quantization and
encoding"), ``s = levels``, the whole row one bucket (no bucketing)::

    Q(x)_i = ||x||_2 * sign(x_i) * l_i / s,   l_i = stochastic rounding of r_i = s |x_i| / ||x||_2

``l_i`` in ``{0..s}``, ``E||Q(x) - x||^2 <= min(d / s^2, sqrt(d) / s) ||x||^2`` (Lemma 3.1). The
receiver computes ``(N / s) * (+-l_i)`` in fp32 from the sent norm ``N``. The message starts with
``N`` (fp32, 4 bytes), then:

- ``coding="fixed"``: ``d`` fields of ``1 + w`` bits, ``w = ceil(log2(s + 1))``: the low bit is the
  sign (1 = negative; 0 when ``l_i = 0``), the other ``w`` bits ``l_i``.
  Bytes: ``4 + ceil(d (1 + w) / 8)``.
- ``coding="elias"``: the paper's encoding Code_s: for each nonzero ``l_i``, ascending ``i``,
  the Elias omega codeword (the paper's "Elias recursive coding") of its distance ``i - i_prev`` to
  the previous nonzero (``i_prev = -1``: the first is its 1-based position), a sign bit
  (1 = negative), and the omega codeword of ``l_i``. The paper leaves the end of the list open; here
  it is an end marker: the omega codeword of ``d - i_last`` (``d + 1`` with no nonzero), i.e. the
  distance to a virtual nonzero at index ``d``, which the decoder recognises. Bytes:
  ``4 + ceil(B / 8)``, ``B = sum_nonzero (|omega(dist_i)| + 1 + |omega(l_i)|) + |omega(d - i_last)|``.

**Uniform** ``bits = b`` (the stochastic ``k``-level quantisation of Suresh et al. 2017, "Distributed
mean estimation with limited communication", with ``k = 2^b``): ``lo = min_i x_i``, ``hi = max_i x_i``,
``step = (hi - lo) / (2^b - 1)`` (fp32), ``c_i`` = stochastic rounding of ``(x_i - lo) / step`` in
``{0..2^b - 1}`` (0 if ``step = 0``), ``C(x)_i = lo + c_i * step``. Message: ``lo``, ``hi`` (fp32),
then ``d`` fields of ``b`` bits. Bytes: ``8 + ceil(b d / 8)``.

**TernGrad** (Wen et al. 2017, "TernGrad: Ternary gradients to reduce communication in distributed
deep learning"; no layer-wise scaling or gradient clipping): ``s = max_i |x_i|``,
``C(x)_i = s * sign(x_i) * b_i``, ``b_i ~ Bernoulli(|x_i| / s)`` (``b_i = [u_i < |x_i| / s]``).
Message: ``s`` (fp32), then ``d`` 2-bit codes ``0 -> 0``, ``1 -> +s``, ``2 -> -s`` (3 is refused).
Bytes: ``4 + ceil(d / 4)``.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from fedbench.compress._bits import (
    BitReader,
    flat_distances,
    flat_nonzero,
    omega_fields,
    omega_lengths,
    pack_fields,
    pack_uints,
    row_norms,
    row_sum,
    unpack_uints,
)
from fedbench.compress.draws import Uniforms, as_tensor, draw_uniforms

CODINGS = ("elias", "fixed")
Rand = torch.Tensor | Uniforms | None  # a stochastic codec's uniforms, as its draw() gives them


def rows_in_parallel(work, n: int) -> list:
    """``[work(i) for i in range(n)]``, on up to torch's thread count of pool threads when there
    are several (the numba kernels release the GIL). The calling thread only waits: having it
    take a share measured slower, next to torch's spinning OpenMP workers."""
    workers = min(n, torch.get_num_threads())
    if workers > 1:
        return list(_pool(workers).map(work, range(n)))
    return [work(i) for i in range(n)]


@functools.lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="fedbench-draw")


def _checked(rand: Rand, x: torch.Tensor, name: str) -> torch.Tensor | Uniforms:
    """``rand``, refused if missing or not of ``x``'s shape."""
    if rand is None:
        raise ValueError(f"{name}: stochastic codec, pass rand from draw()")
    if tuple(rand.shape) != tuple(x.shape):
        raise ValueError(f"{name}: rand of shape {tuple(rand.shape)} for x of shape {tuple(x.shape)}")
    return rand


def _uniforms(rand: Rand, x: torch.Tensor, name: str) -> torch.Tensor:
    """``rand`` checked against ``x`` and materialised on its device."""
    return as_tensor(_checked(rand, x, name), x.device)


def _kernel_inputs(x: torch.Tensor, rand: Rand, name: str) -> tuple[torch.Tensor, torch.Tensor | Uniforms]:
    """fp32 CPU rows ``x`` and their uniforms for a kernel of :mod:`fedbench.compress._fused`: a draw
    stays a draw (the kernel computes it in its loop), a tensor is converted."""
    x = x.detach().float()
    rand = _checked(rand, x, name)
    return x, rand if isinstance(rand, Uniforms) else as_tensor(rand)


def stochastic_round(r: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``floor(r) + [u < r - floor(r)]`` for ``r >= 0``, in place of ``r``. The indicator is
    ``ceil(f - u)`` for the fractional part ``f`` (exact: ``f - u`` in ``(-1, 1)`` is positive iff
    ``u < f``, IEEE subtraction keeps the sign), which avoids torch's slow CPU comparisons."""
    low = torch.floor(r)
    return r.sub_(low).sub_(u).ceil_().add_(low)  # -0 + low is low's sign


def _scalars(data: bytes, count: int, name: str) -> torch.Tensor:
    """The leading ``count`` fp32 of a message as a ``(1, count)`` tensor; refuses negative or non-finite."""
    if len(data) < 4 * count:
        raise ValueError(f"{name}: message shorter than its header")
    values = np.frombuffer(data, "<f4", count).astype(np.float32)
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: non-finite header {values.tolist()}")
    return torch.from_numpy(values).view(1, count)


def _row(row: torch.Tensor, rand: Rand) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A single row and its uniforms as a batch of one, on the CPU."""
    row = row.detach().cpu().float().view(1, -1)
    return row, None if rand is None else as_tensor(rand).detach().view(1, -1)


class QSGD:
    name = "qsgd"
    stochastic = True

    def __init__(self, levels: int, coding: str = "elias"):
        if int(levels) != levels or not 1 <= levels < 2**24:  # levels stay exact in fp32
            raise ValueError(f"qsgd: levels={levels}, expected an integer in [1, 2**24)")
        if coding not in CODINGS:
            raise ValueError(f"qsgd: coding={coding!r}; allowed: {', '.join(CODINGS)}")
        self.levels, self.coding = int(levels), coding
        self.width = self.levels.bit_length()

    def draw(self, n: int, d: int, generator: torch.Generator) -> Uniforms:
        return draw_uniforms(n, d, generator)

    def quantize(self, x: torch.Tensor, rand: Rand) -> tuple[torch.Tensor, torch.Tensor]:
        """The sent norms ``(n, 1)`` and signed levels ``+-l_i`` ``(n, d)`` (fp32 integers, zero as +0)."""
        x = x.float()
        u = _uniforms(rand, x, self.name)
        norm = row_norms(x)
        r = x.abs().div_(torch.where(norm > 0, norm, 1.0)).mul_(self.levels)
        # the fp32 norm can lie an ulp below the largest |x_i| (rounded squares), so r can pass s
        level = stochastic_round(r, u).clamp_(max=self.levels)
        return norm, level.copysign_(x).add_(0.0)  # + 0.0 turns a -0 level into +0

    def dequantize(self, norm: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``(N / s) * q``, in place of ``q``."""
        return q.mul_(norm / self.levels)

    def elias_bits(self, q: torch.Tensor) -> torch.Tensor:
        """Bits of the ``elias`` code stream of each row of signed levels ``q`` (int64, on its device)."""
        flat = flat_nonzero(q)
        rows, dist, tail = flat_distances(flat, *q.shape)
        levels = q.reshape(-1)[flat].abs().long()  # row-major, the order of flat_distances
        per_entry = omega_lengths(dist) + 1 + omega_lengths(levels)
        return row_sum(rows, per_entry, q.shape[0]) + omega_lengths(tail)

    def roundtrip(self, x: torch.Tensor, rand: Rand = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded rows and bytes: on the CPU by the one-pass kernel of :mod:`fedbench.compress._fused`
        (the same numbers), elsewhere :meth:`reference_roundtrip`."""
        if x.device.type != "cpu":
            return self.reference_roundtrip(x, rand)
        from fedbench.compress import _fused

        x, u = _kernel_inputs(x, rand, self.name)
        decoded, bits = _fused.qsgd(x, u, row_norms(x), self.levels, self.coding == "elias")
        return decoded, self._nbytes(bits, *x.shape)

    def reference_roundtrip(self, x: torch.Tensor, rand: Rand = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The fast path by its definition, in torch ops: :meth:`quantize`, :meth:`elias_bits`,
        :meth:`dequantize`."""
        norm, q = self.quantize(x, rand)
        bits = self.elias_bits(q) if self.coding == "elias" else None
        return self.dequantize(norm, q), self._nbytes(bits, *q.shape)

    def _nbytes(self, elias_bits: torch.Tensor | None, n: int, d: int) -> torch.Tensor:
        if self.coding == "fixed":
            return torch.full((n,), 4 + -(-d * (1 + self.width) // 8), dtype=torch.int64)
        return 4 + torch.div(elias_bits + 7, 8, rounding_mode="floor").cpu()

    def encode(self, row: torch.Tensor, rand: Rand = None) -> bytes:
        norm, q = self.quantize(*_row(row, rand))
        head = norm.numpy().astype("<f4").tobytes()
        q = q[0].long().numpy()
        if self.coding == "fixed":
            return head + pack_uints((q < 0) + 2 * np.abs(q), 1 + self.width)
        idx = np.flatnonzero(q)
        dist = np.diff(idx, prepend=-1)
        end = q.size - (idx[-1] if idx.size else -1)
        dist_v, dist_w = omega_fields(dist)
        level_v, level_w = omega_fields(np.abs(q[idx]))
        sign = (q[idx] < 0).astype(np.int64)[:, None]
        end_v, end_w = omega_fields(np.array([end]))
        values = np.concatenate([np.hstack([dist_v, sign, level_v]).ravel(), end_v.ravel()])
        widths = np.concatenate([np.hstack([dist_w, np.ones_like(sign), level_w]).ravel(), end_w.ravel()])
        return head + pack_fields(values, widths)

    def decode(self, data: bytes, d: int, rand: Rand = None) -> torch.Tensor:
        norm = _scalars(data, 1, self.name)
        if norm.item() < 0:
            raise ValueError(f"qsgd: negative norm {norm.item()}")
        if self.coding == "fixed":
            fields = unpack_uints(data[4:], d, 1 + self.width, self.name)
            negative, level = fields & 1, fields >> 1
            if (level > self.levels).any() or (negative.astype(bool) & (level == 0)).any():
                raise ValueError(f"qsgd: a level above s={self.levels} or a negative zero")
            q = np.where(negative.astype(bool), -level, level)
        else:
            q = self._decode_elias(data[4:], d)
        return self.dequantize(norm, torch.from_numpy(q).float().view(1, d))[0]

    def _decode_elias(self, data: bytes, d: int) -> np.ndarray:
        q = np.zeros(d, dtype=np.int64)
        reader = BitReader(data, self.name)
        i = reader.omega() - 1
        while i < d:
            negative = reader.bit()
            level = reader.omega()
            if level > self.levels:
                raise ValueError(f"qsgd: level {level} above s={self.levels}")
            q[i] = -level if negative else level
            i += reader.omega()
        if i != d:
            raise ValueError(f"qsgd: the end marker points at index {i}, expected d={d}")
        reader.finish()
        return q


class Uniform:
    name = "uniform"
    stochastic = True

    def __init__(self, bits: int):
        if int(bits) != bits or not 1 <= bits <= 16:
            raise ValueError(f"uniform: bits={bits}, expected an integer in [1, 16]")
        self.bits = int(bits)
        self.top = 2**self.bits - 1

    def draw(self, n: int, d: int, generator: torch.Generator) -> Uniforms:
        return draw_uniforms(n, d, generator)

    def step(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        return (hi - lo) / self.top

    def quantize(self, x: torch.Tensor, rand: Rand) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``lo``, ``hi`` ``(n, 1)`` and the codes ``c_i`` ``(n, d)`` (fp32 integers)."""
        x = x.float()
        u = _uniforms(rand, x, self.name)
        lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
        step = self.step(lo, hi)
        r = (x - lo).div_(torch.where(step > 0, step, 1.0))  # step 0: every x_i is lo, r = 0
        return lo, hi, stochastic_round(r, u).clamp_(0, self.top)

    def dequantize(self, lo: torch.Tensor, hi: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """``lo + c_i * step``, in place of ``codes``."""
        return codes.mul_(self.step(lo, hi)).add_(lo)

    def roundtrip(self, x: torch.Tensor, rand: Rand = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded rows and bytes: on the CPU by the one-pass kernel of :mod:`fedbench.compress._fused`
        (the same numbers), elsewhere :meth:`reference_roundtrip`."""
        if x.device.type != "cpu":
            return self.reference_roundtrip(x, rand)
        from fedbench.compress import _fused

        x, u = _kernel_inputs(x, rand, self.name)
        lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
        return _fused.uniform(x, u, lo, self.step(lo, hi), self.top), self._nbytes(*x.shape)

    def reference_roundtrip(self, x: torch.Tensor, rand: Rand = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The fast path by its definition, in torch ops: :meth:`quantize`, :meth:`dequantize`."""
        lo, hi, codes = self.quantize(x, rand)
        return self.dequantize(lo, hi, codes), self._nbytes(*codes.shape)

    def _nbytes(self, n: int, d: int) -> torch.Tensor:
        return torch.full((n,), 8 + -(-d * self.bits // 8), dtype=torch.int64)

    def encode(self, row: torch.Tensor, rand: Rand = None) -> bytes:
        lo, hi, codes = self.quantize(*_row(row, rand))
        head = torch.cat([lo, hi], 1).numpy().astype("<f4").tobytes()
        return head + pack_uints(codes[0].long().numpy(), self.bits)

    def decode(self, data: bytes, d: int, rand: Rand = None) -> torch.Tensor:
        lo, hi = _scalars(data, 2, self.name).view(2, 1, 1)
        if not lo.item() <= hi.item():
            raise ValueError(f"uniform: lo={lo.item()} above hi={hi.item()}")
        codes = torch.from_numpy(unpack_uints(data[8:], d, self.bits, self.name)).float().view(1, d)
        return self.dequantize(lo, hi, codes)[0]


class TernGrad:
    name = "terngrad"
    stochastic = True

    def draw(self, n: int, d: int, generator: torch.Generator) -> Uniforms:
        return draw_uniforms(n, d, generator)

    def quantize(self, x: torch.Tensor, rand: Rand) -> tuple[torch.Tensor, torch.Tensor]:
        """``s`` ``(n, 1)`` and the ternary ``sign(x_i) b_i`` ``(n, d)`` in {-1, 0, 1} (fp32)."""
        x = x.float()
        u = _uniforms(rand, x, self.name)
        a = x.abs()
        scale = a.amax(1, keepdim=True)
        # b_i = [u_i < p_i] as ceil(p_i - u_i), exact (see stochastic_round); then its sign, no -0
        keep = a.div_(torch.where(scale > 0, scale, 1.0)).sub_(u).ceil_()
        return scale, keep.copysign_(x).add_(0.0)

    def roundtrip(self, x: torch.Tensor, rand: Rand = None) -> tuple[torch.Tensor, torch.Tensor]:
        scale, t = self.quantize(x, rand)
        n, d = t.shape
        return t.mul_(scale), torch.full((n,), 4 + -(-d // 4), dtype=torch.int64)

    def encode(self, row: torch.Tensor, rand: Rand = None) -> bytes:
        scale, t = self.quantize(*_row(row, rand))
        codes = (t[0] != 0).long() + (t[0] < 0).long()
        return scale.numpy().astype("<f4").tobytes() + pack_uints(codes.numpy(), 2)

    def decode(self, data: bytes, d: int, rand: Rand = None) -> torch.Tensor:
        scale = _scalars(data, 1, self.name)
        if scale.item() < 0:
            raise ValueError(f"terngrad: negative scale {scale.item()}")
        codes = unpack_uints(data[4:], d, 2, self.name)
        if (codes == 3).any():
            raise ValueError("terngrad: code 3 is not a ternary value")
        t = torch.from_numpy(np.select([codes == 1, codes == 2], [1.0, -1.0], 0.0).astype(np.float32))
        return (scale * t.view(1, d))[0]
