"""The uniforms ``U[0, 1)`` of the stochastic codecs (QSGD, uniform quantisation, TernGrad):
counter-based, from SplitMix64.

Row ``r`` of an ``(n, d)`` draw from the seed ``s`` (the ``compress`` stream's generator seed) has
the key ``k_r``, word ``r`` of ``numpy.random.SeedSequence(s).generate_state(n, uint64)``, and its
``i``-th uniform (``i = 0, 1, ...``) is cut from the ``i``-th output of SplitMix64 started at
``k_r`` (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators", OOPSLA; the
constants of Vigna's ``splitmix64.c``), all mod ``2^64``::

    z = k_r + (i + 1) * 0x9E3779B97F4A7C15
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z =  z ^ (z >> 31)
    u_{r,i} = (z >> 40) * 2^-24        in {0, 2^-24, ..., 1 - 2^-24}, exact in fp32

Its two 64-bit multiplies per value vectorise in numba, which halved QSGD's cost against numpy's
PCG64 draws (one call per value through a function pointer), which this replaced. A uniform is a
pure function of (seed, row, index), so the CPU kernels of QSGD and uniform quantisation compute it
inside their loop, without an ``(n, d)`` array written and read back (:mod:`fedbench.compress._fused`),
and a GPU computes the same numbers with tensor ops: the same seed gives the same
uniforms on any device and thread count, and row ``r``'s first ``d`` uniforms do not depend on
``n`` or on a longer ``d``. SplitMix64 passes TestU01's BigCrush (Steele et al. 2014); 24 bits is
what a float32 draw keeps (numpy's too). Rows are segments of one Weyl sequence's orbit of
``2^64``; two rows of a round overlap only if their keys lie within ``d`` steps of each other on it,
probability about ``n^2 d / 2^64``.

:meth:`Uniforms.tensor` materialises a draw: with numba's kernel on the CPU, tensor ops elsewhere
(:func:`splitmix_uniforms`, the definition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

GAMMA, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
SCALE = 2.0**-24


def _int64(c: int) -> int:
    """The int64 with the bits of the uint64 ``c`` (torch has int64 arithmetic, which wraps)."""
    return c - 2**64 if c >= 2**63 else c


def _shift_right(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` on int64 is arithmetic)."""
    return (z >> k).bitwise_and_((1 << (64 - k)) - 1)


def splitmix_uniforms(keys: np.ndarray, d: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``u_{r,i}`` ``(len(keys), d)`` fp32 on ``device``, in torch int64 ops from the definition above."""
    k = torch.from_numpy(np.ascontiguousarray(keys, dtype=np.uint64).view(np.int64)).to(device)
    z = k[:, None] + torch.arange(1, d + 1, dtype=torch.int64, device=k.device).mul_(_int64(GAMMA))
    # in place: at most two (n, d) int64 tensors live at once
    z.bitwise_xor_(_shift_right(z, 30)).mul_(_int64(MIX1))
    z.bitwise_xor_(_shift_right(z, 27)).mul_(_int64(MIX2))
    # SplitMix64's last step, z ^ (z >> 31), changes bits 0-32 only, not the 24 kept: skipped
    return _shift_right(z, 40).float().mul_(SCALE)


@dataclass(frozen=True, eq=False)  # no elementwise ``==`` over the keys array
class Uniforms:
    """A draw of ``(n, d)`` uniforms, not yet computed: one SplitMix64 key per row."""

    keys: np.ndarray  # (n,) uint64
    d: int

    def __post_init__(self):
        # the kernels type a key by its dtype: a Python int or int64 key would not be uint64 arithmetic
        object.__setattr__(self, "keys", np.ascontiguousarray(self.keys, dtype=np.uint64))

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.keys), self.d)

    def __getitem__(self, row: int) -> Uniforms:
        """Row ``row`` as a draw of one row (its uniforms are the same numbers)."""
        return Uniforms(self.keys[[row]], self.d)

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The uniforms ``(n, d)`` fp32 on ``device``."""
        if torch.device(device).type != "cpu":
            return splitmix_uniforms(self.keys, self.d, device)
        from fedbench.compress import _fused

        return _fused.fill_uniforms(self.keys, self.d)


def draw_uniforms(n: int, d: int, generator: torch.Generator) -> Uniforms:
    """The ``(n, d)`` uniforms of ``generator``'s seed (its ``initial_seed``; a fresh generator)."""
    return Uniforms(np.random.SeedSequence(generator.initial_seed()).generate_state(n, np.uint64), d)


def as_tensor(rand: torch.Tensor | Uniforms, device: torch.device | str = "cpu") -> torch.Tensor:
    """``rand`` as an fp32 tensor on ``device``."""
    if isinstance(rand, Uniforms):
        return rand.tensor(device)
    return rand.to(device=device, dtype=torch.float32)
