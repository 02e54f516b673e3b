"""The one-pass CPU kernels of QSGD and uniform quantisation (``fedbench.compress._fused``).

Each kernel must give the same numbers, bit for bit (signed zeros included), and the same byte
counts as the codec's torch definition (``reference_roundtrip``), on random rows and on the edge
cases of the definitions (zero rows, denormals, uniforms of 0, levels at their limits); and known
answers computed by hand, which also pin the torch definitions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbench.compress.quantize import QSGD, Uniform


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b) and torch.equal(torch.signbit(a), torch.signbit(b))


def rows(n: int, d: int, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian rows times ``scale`` with zero rows and entries, a denormal, and uniforms that hit
    0 and the largest fp32 below 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * scale
    u = torch.rand(n, d, generator=g)
    if n and d:
        x[0, ::3] = 0.0
        x[-1, 0] = -1e-40
        u[0, :2] = 0.0
        u[-1, -1] = float(np.nextafter(np.float32(1), np.float32(0)))
    if n > 2:
        x[1] = 0.0
    return x, u


CODECS = [QSGD(1), QSGD(2), QSGD(16), QSGD(255, "fixed"), QSGD(2**24 - 1), Uniform(1), Uniform(4), Uniform(16)]


@settings(max_examples=40, deadline=None)
@given(
    codec=st.sampled_from(CODECS),
    n=st.integers(0, 4),
    d=st.integers(0, 300),
    seed=st.integers(0, 2**31),
    scale=st.sampled_from([0.0, 1e-39, 1e-20, 1e-3, 1.0, 1e15]),  # squares stay below fp32 max
)
def test_kernel_equals_the_torch_definition(codec, n, d, seed, scale):
    if isinstance(codec, Uniform) and not d:
        d = 1  # lo and hi of an empty row do not exist: both paths refuse it (amin of nothing)
    x, u = rows(n, d, seed, scale)
    got, got_bytes = codec.roundtrip(x, u)
    want, want_bytes = codec.reference_roundtrip(x.clone(), u)
    assert got.dtype == torch.float32 and same(got, want)
    assert got_bytes.dtype == torch.int64 and torch.equal(got_bytes, want_bytes)


@pytest.mark.parametrize("codec", [QSGD(16), Uniform(8)], ids=lambda c: c.name)
def test_kernel_on_a_large_batch_any_thread_count_and_layout(codec):
    x, u = rows(6, 50_000, 1, 0.01)
    want, want_bytes = codec.reference_roundtrip(x, u)
    before = torch.get_num_threads()
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            got, got_bytes = codec.roundtrip(x, u)
            assert same(got, want) and torch.equal(got_bytes, want_bytes)
    finally:
        torch.set_num_threads(before)
    # a non-contiguous fp64 view with grad, and uniforms in fp64: converted, x left untouched
    wide = torch.zeros(6, 100_000, dtype=torch.float64)
    wide[:, ::2] = x.double()
    view = wide[:, ::2].requires_grad_()
    got, _ = codec.roundtrip(view, u.double())
    assert same(got, want) and torch.equal(wide[:, ::2].float(), x)


def test_qsgd_by_hand():
    # x = (3, -4, 0), N = 5, s = 2: r = (1.2, 1.6, 0) in fp32 (0.6 * 2, 0.8 * 2). u = (0.5, 0.1, 0.9):
    # 1.2 stays 1 (0.5 >= 0.2), 1.6 rounds up to 2 (0.1 < 0.6), 0 stays 0. Decoded (N / s) * (1, -2, 0).
    # Elias stream: entry 0 (distance 1: omega "0", sign 0, level 1: "0") 3 bits, entry 1 (distance 1:
    # "0", sign 1, level 2: "100") 5 bits, end marker d - 1 = 2: "100", 3 bits; 11 bits -> 2 bytes + 4.
    x = torch.tensor([[3.0, -4.0, 0.0]])
    u = torch.tensor([[0.5, 0.1, 0.9]])
    codec = QSGD(2)
    got, nbytes = codec.roundtrip(x, u)
    assert got.tolist() == [[2.5, -5.0, 0.0]] and not torch.signbit(got[0, 2])
    assert nbytes.tolist() == [6] == [len(codec.encode(x[0], u[0]))]
    assert torch.equal(codec.decode(codec.encode(x[0], u[0]), 3), got[0])
    fixed = QSGD(2, "fixed")  # 3 fields of 1 + 2 bits: 9 bits -> 2 bytes + 4
    assert fixed.roundtrip(x, u)[1].tolist() == [6]
    # a zero row: N = 0, every level 0, +0 everywhere; the stream is the end marker omega(d + 1 = 4)
    # = "101000", 6 bits -> 1 byte + 4
    zero, nbytes = codec.roundtrip(torch.tensor([[-0.0, 0.0, -0.0]]), u)
    assert not torch.signbit(zero).any() and zero.abs().sum() == 0 and nbytes.tolist() == [5]


def test_uniform_by_hand():
    # bits = 2: lo = 0, hi = 3, step = 1; r = x. 0.5 rounds up (u = 0.4 < 0.5), 2.25 stays 2
    # (u = 0.3 >= 0.25), the ends are exact whatever u.
    x = torch.tensor([[0.0, 0.5, 2.25, 3.0]])
    u = torch.tensor([[0.7, 0.4, 0.3, 0.9]])
    got, nbytes = Uniform(2).roundtrip(x, u)
    assert got.tolist() == [[0.0, 1.0, 2.0, 3.0]] and nbytes.tolist() == [8 + 1]
    # a constant row: step 0, every code 0, decoded lo
    flat, _ = Uniform(3).roundtrip(torch.full((1, 5), -1.5), torch.rand(1, 5))
    assert flat.tolist() == [[-1.5] * 5]


@pytest.mark.parametrize(
    ("codec", "shapes"), [(QSGD(4), [(0, 5), (2, 0)]), (QSGD(4, "fixed"), [(0, 5), (2, 0)]), (Uniform(3), [(0, 5)])]
)
def test_empty_batches(codec, shapes):
    for n, d in shapes:
        got, nbytes = codec.roundtrip(torch.zeros(n, d), torch.zeros(n, d))
        want, want_bytes = codec.reference_roundtrip(torch.zeros(n, d), torch.zeros(n, d))
        assert got.shape == (n, d) and torch.equal(nbytes, want_bytes)


def test_uniforms_are_required_and_shaped():
    with pytest.raises(ValueError, match=r"^qsgd: stochastic codec, pass rand from draw\(\)$"):
        QSGD(4).roundtrip(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"^uniform: rand of shape \(1, 2\) for x of shape \(1, 3\)$"):
        Uniform(4).roundtrip(torch.zeros(1, 3), torch.zeros(1, 2))


def test_the_clamps_bite():
    # QSGD: 4.2e-23 squared is a subnormal that rounds to the smallest one, 2**-149, so N = 2**-74.5
    # = 3.743e-23 lies below |x_0| and r_0 = 17.95 > s = 16: the level is clamped to s.
    x = torch.tensor([[4.2e-23, 0.0, -1e-30]])
    u = torch.tensor([[0.0, 0.5, 0.5]])
    norm = np.float32(np.sqrt(np.float32(2.0**-149)))
    assert norm < np.float32(4.2e-23)
    got, _ = QSGD(16).roundtrip(x, u)
    assert got.tolist() == [[float(norm), 0.0, 0.0]]  # (N / 16) * 16 = N, a power-of-two scaling
    # uniform, bits = 3: step = (hi - lo) / 7 rounds so that (hi - lo) / step = 7.0000005; with u = 0
    # the stochastic rounding gives 8, clamped to 7. x_2 = 0: r = 5.77 -> 6 (u = 0 < 0.77).
    lo, hi = np.float32(-0.7564491033554077), np.float32(0.16169266402721405)
    step = np.float32(np.float32(hi - lo) / np.float32(7))
    assert np.float32(hi - lo) / step > 7
    got, _ = Uniform(3).roundtrip(torch.tensor([[lo, hi, 0.0]]), torch.zeros(1, 3))
    want = [float(lo), float(np.float32(np.float32(7 * step) + lo)), float(np.float32(np.float32(6 * step) + lo))]
    assert got.tolist() == [want]
