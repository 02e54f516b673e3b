"""The stochastic codecs' uniforms (fedbench.compress.draws): SplitMix64 by its published outputs
and by a big-integer transcription, the same numbers from every path, and their distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbench.compress import QSGD, TernGrad, Uniform
from fedbench.compress.draws import Uniforms, as_tensor, draw_uniforms, splitmix_uniforms

M = 2**64
# Rosetta Code, "Pseudo-random numbers/Splitmix64": the first five outputs from the state 1234567
PUBLISHED = [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821]


def splitmix64(state: int, count: int) -> list[int]:
    """Vigna's splitmix64.c ``next()``, ``count`` times from ``state``, in Python integers."""
    out = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) % M
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % M
        out.append(z ^ (z >> 31))
    return out


def uniforms_by_hand(keys: list[int], d: int) -> torch.Tensor:
    return torch.tensor([[(z >> 40) / 2**24 for z in splitmix64(k, d)] for k in keys], dtype=torch.float32)


def both_paths(keys, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The numba fill (the CPU path) and the torch int64 ops (the GPU path), both on the CPU."""
    keys = np.array(keys, dtype=np.uint64)
    return Uniforms(keys, d).tensor(), splitmix_uniforms(keys, d)


def test_splitmix64_published_outputs():
    assert splitmix64(1234567, 5) == PUBLISHED
    want = torch.tensor([[(z >> 40) / 2**24 for z in PUBLISHED]], dtype=torch.float32)
    for got in both_paths([1234567], 5):
        assert torch.equal(got, want)
    assert float(want[0, 0]) == 5873360 / 2**24  # 6457827717110365317 // 2**40


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(st.integers(0, M - 1), min_size=1, max_size=4), d=st.integers(1, 300))
def test_both_paths_equal_the_big_integer_transcription(keys, d):
    want = uniforms_by_hand(keys, d)
    for got in both_paths(keys, d):
        assert got.dtype == torch.float32 and torch.equal(got, want)


def test_extreme_keys_wrap_mod_2_64():
    keys = [0, 1, 2**63 - 1, 2**63, M - 1, M - 0x9E3779B97F4A7C15]  # the last: state 0 on the first step
    want = uniforms_by_hand(keys, 64)
    for got in both_paths(keys, 64):
        assert torch.equal(got, want)


def test_a_draw_is_seed_sequence_keys_and_a_prefix_in_rows_and_length():
    g = torch.Generator().manual_seed(42)
    big = draw_uniforms(6, 500, g)
    assert big.shape == (6, 500)
    np.testing.assert_array_equal(big.keys, np.random.SeedSequence(42).generate_state(6, np.uint64))
    small = draw_uniforms(3, 200, torch.Generator().manual_seed(42))
    assert torch.equal(small.tensor(), big.tensor()[:3, :200])
    assert torch.equal(big[4].tensor(), big.tensor()[4:5]) and torch.equal(big[-1].tensor(), big.tensor()[5:])
    other = draw_uniforms(6, 500, torch.Generator().manual_seed(43)).tensor()
    assert not torch.equal(other[0], big.tensor()[0])
    assert draw_uniforms(0, 7, g).tensor().shape == (0, 7)


def test_the_same_numbers_whatever_the_threads():
    before = torch.get_num_threads()
    u = draw_uniforms(5, 3000, torch.Generator().manual_seed(1))
    try:
        torch.set_num_threads(1)
        one = u.tensor()
        torch.set_num_threads(2)
        two = u.tensor()
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_as_tensor_materialises_draws_and_converts_tensors():
    u = draw_uniforms(2, 10, torch.Generator().manual_seed(0))
    assert torch.equal(as_tensor(u), u.tensor())
    t = as_tensor(torch.tensor([[1, 2]], dtype=torch.float64))
    assert t.dtype == torch.float32 and t.tolist() == [[1.0, 2.0]]


def test_values_are_24_bit_grid_points_in_the_unit_interval():
    u = draw_uniforms(4, 250_000, torch.Generator().manual_seed(5)).tensor().double()
    assert float(u.min()) >= 0 and float(u.max()) <= 1 - 2**-24
    assert torch.equal(u * 2**24, (u * 2**24).floor())


def test_distribution_moments_bins_and_neighbours():
    """U[0, 1): mean 1/2 and variance 1/12 within 5 standard errors; 64 equal bins by a chi-square
    far below its 1e-6 tail (df 63: 125.9 is the 1e-6 quantile); no correlation between
    neighbours in a row or between rows beyond 5 standard errors (1 / sqrt(m))."""
    n, d = 8, 200_000
    u = draw_uniforms(n, d, torch.Generator().manual_seed(2024)).tensor().double()
    m = u.numel()
    assert abs(float(u.mean()) - 0.5) < 5 * (1 / 12 / m) ** 0.5
    assert abs(float(u.var()) - 1 / 12) < 5 * (1 / 180 / m) ** 0.5  # Var((u - 1/2)^2) = 1/180
    counts = torch.bincount((u * 64).long().flatten(), minlength=64).double()
    assert float(((counts - m / 64) ** 2 / (m / 64)).sum()) < 125.9
    c = u - 0.5
    lag = float((c[:, 1:] * c[:, :-1]).mean() * 12)
    rows = float((c[1:] * c[:-1]).mean() * 12)
    assert abs(lag) < 5 / (n * (d - 1)) ** 0.5 and abs(rows) < 5 / ((n - 1) * d) ** 0.5


@pytest.mark.parametrize("codec", [QSGD(5), QSGD(3, coding="fixed"), Uniform(4), TernGrad()], ids=lambda c: c.name)
def test_a_draw_and_its_tensor_give_the_codec_the_same_numbers(codec):
    x = torch.randn(5, 3001, generator=torch.Generator().manual_seed(9))
    u = codec.draw(5, 3001, torch.Generator().manual_seed(3))
    assert isinstance(u, Uniforms)
    lazy, lazy_bytes = codec.roundtrip(x, u)
    eager, eager_bytes = codec.roundtrip(x, u.tensor())
    assert torch.equal(lazy.view(torch.int32), eager.view(torch.int32)) and torch.equal(lazy_bytes, eager_bytes)
    assert codec.encode(x[2], u[2]) == codec.encode(x[2], u.tensor()[2])


def test_a_draw_of_the_wrong_shape_is_refused():
    u = draw_uniforms(2, 9, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"^qsgd: rand of shape \(2, 9\) for x of shape \(2, 8\)$"):
        QSGD(4).roundtrip(torch.ones(2, 8), u)


def test_keys_of_any_integer_type_are_one_draw_in_the_kernels():
    """Keys are held as uint64 whatever they are given as: a list with a key above 2^63 (which numpy
    would make float64) reaches the kernels' in-loop SplitMix64 as the same draw."""
    x = torch.randn(2, 500, generator=torch.Generator().manual_seed(4))
    given = Uniforms([1234567, M - 1], 500)
    assert given.keys.dtype == np.uint64 and given.keys.tolist() == [1234567, M - 1]
    for codec in (QSGD(4), Uniform(3)):
        a, _ = codec.roundtrip(x, given)
        b, _ = codec.roundtrip(x, uniforms_by_hand([1234567, M - 1], 500))
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))
