"""The sparsifying and quantising codecs (randk, threshold, qsgd, uniform, terngrad, scaled sign): the
fast path equals encode-then-decode bit for bit with exact byte counts, hand-computed messages,
unbiasedness and QSGD's variance checked statistically, determinism, and refusal of bad messages."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbench.compress import QSGD, RandK, ScaledSign, TernGrad, Threshold, Uniform
from fedbench.compress._bits import BitReader, omega_fields, omega_lengths, pack_fields, pack_uints
from fedbench.compress.draws import as_tensor

CODECS = {
    "randk-0.1-shared": RandK(fraction=0.1),
    "randk-3-indices-unbiased": RandK(k=3, shared_seed=False, unbiased=True),
    "randk-0.5-shared-unbiased": RandK(fraction=0.5, unbiased=True),
    "randk-all-indices": RandK(fraction=1.0, shared_seed=False),
    "threshold-0.5": Threshold(0.5),
    "threshold-0": Threshold(0.0),
    "qsgd-1-elias": QSGD(1),
    "qsgd-16-elias": QSGD(16),
    "qsgd-300-elias": QSGD(300),
    "qsgd-1-fixed": QSGD(1, coding="fixed"),
    "qsgd-5-fixed": QSGD(5, coding="fixed"),
    "uniform-1": Uniform(1),
    "uniform-3": Uniform(3),
    "uniform-8": Uniform(8),
    "terngrad": TernGrad(),
    "scaled-sign": ScaledSign(),
}


def draw(codec, n, d, seed=0):
    return codec.draw(n, d, torch.Generator().manual_seed(seed)) if codec.stochastic else None


def row_of(rand, i):
    return None if rand is None else rand[i]


def bits_of(t):
    return t.contiguous().view(torch.int32)  # bit patterns: -0.0 and NaN compare exactly


def assert_fast_equals_wire(codec, x, rand):
    n, d = x.shape
    fast, nbytes = codec.roundtrip(x, rand)
    assert fast.shape == (n, d) and fast.dtype == torch.float32
    assert nbytes.shape == (n,) and nbytes.dtype == torch.int64 and nbytes.device.type == "cpu"
    for i in range(n):
        msg = codec.encode(x[i], row_of(rand, i))
        assert len(msg) == int(nbytes[i]), (i, len(msg), int(nbytes[i]))
        assert torch.equal(bits_of(codec.decode(msg, d, row_of(rand, i))), bits_of(fast[i])), i
    return fast, nbytes


def batch(d, seed):
    """Rows at six scales, a zero row, a row of repeated magnitudes, a half-zero row."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(9, d, generator=g) * torch.logspace(-3, 3, 9).view(9, 1)
    x[2] = 0.0
    x[4] = torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0]).repeat(d)[:d]
    x[6, : d // 2] = 0.0
    return x


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
@pytest.mark.parametrize("d", [1, 7, 8, 9, 300, 2000])
def test_fast_path_equals_wire_path_and_bytes_are_exact(codec, d):
    x = batch(d, seed=d)
    assert_fast_equals_wire(codec, x, draw(codec, 9, d, seed=d))


values = st.one_of(st.floats(-1e6, 1e6, width=32), st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0**-20]))


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(sorted(CODECS)), st.lists(values, min_size=1, max_size=80), st.integers(0, 2**32))
def test_property_fast_equals_wire(name, row, seed):
    codec = CODECS[name]
    x = torch.tensor([row, [v * 3 for v in row]], dtype=torch.float32)
    assert_fast_equals_wire(codec, x, draw(codec, 2, x.shape[1], seed))


def test_large_rows_fast_equals_wire():
    """Dense and sparse streams at d = 50,000 (varints of 3 bytes, omega codewords of many groups)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 50_000, generator=g)
    x[1, torch.randperm(50_000, generator=g)[:49_900]] = 0.0
    for codec in (QSGD(255), QSGD(1), Threshold(2.0), RandK(k=700, shared_seed=False)):
        assert_fast_equals_wire(codec, x, draw(codec, 2, 50_000))


# ---- messages and values by hand -------------------------------------------------------------------
def test_randk_known_values_and_shared_seed_sends_only_the_values():
    x = torch.tensor([[10.0, 20.0, 30.0, 40.0, 50.0]])
    rand = torch.tensor([[1, 3]])
    out, nbytes = RandK(k=2).roundtrip(x, rand)
    assert out.tolist() == [[0.0, 20.0, 0.0, 40.0, 0.0]] and nbytes.tolist() == [8]
    assert RandK(k=2).encode(x[0], rand[0]) == struct.pack("<2f", 20.0, 40.0)  # no header, no indices
    assert RandK(k=2, unbiased=True).roundtrip(x, rand)[0].tolist() == [[0.0, 50.0, 0.0, 100.0, 0.0]]  # d/k = 2.5
    # indices sent: k, varint first index 1 and gap 3 - 1 - 1 = 1, values
    msg = RandK(k=2, shared_seed=False).encode(x[0], rand[0])
    assert msg == struct.pack("<I", 2) + bytes([1, 1]) + struct.pack("<2f", 20.0, 40.0)
    assert RandK(k=2, shared_seed=False).roundtrip(x, rand)[1].tolist() == [len(msg)]


def test_randk_draw_keeps_exactly_k_uniformly():
    codec, n, d, k = RandK(k=3), 20_000, 10, 3
    idx = codec.draw(n, d, torch.Generator().manual_seed(1))
    assert idx.shape == (n, k) and (idx.diff(dim=1) > 0).all() and idx.min() >= 0 and idx.max() < d
    out, _ = codec.roundtrip(torch.arange(1.0, d + 1).expand(n, d), idx)
    assert ((out != 0).sum(1) == k).all()
    # each index kept with probability k/d: counts Binomial(n, 0.3), within 5 standard deviations
    counts = torch.bincount(idx.reshape(-1), minlength=d).double()
    assert ((counts - n * k / d).abs() <= 5 * math.sqrt(n * k / d * (1 - k / d))).all(), counts
    assert RandK(fraction=0.01).k_for(1000) == 10 and RandK(fraction=0.01).k_for(10) == 1


def test_threshold_known_values():
    x = torch.tensor([[0.5, -0.2, -0.7, 0.49, 0.5]])
    out, nbytes = Threshold(0.5).roundtrip(x)
    assert out.tolist() == [[0.5, 0.0, pytest.approx(-0.7), 0.0, 0.5]]
    msg = Threshold(0.5).encode(x[0])
    # k = 3; indices 0, 2, 4: first 0, gaps 1, 1; values
    assert msg == struct.pack("<I", 3) + bytes([0, 1, 1]) + x[0, [0, 2, 4]].numpy().astype("<f4").tobytes()
    assert nbytes.tolist() == [len(msg)] == [4 + 3 + 12]
    assert Threshold(1.0).encode(x[0]) == struct.pack("<I", 0)  # nothing kept: the header alone


@settings(max_examples=60, deadline=None)
@given(st.lists(values, min_size=1, max_size=60), st.sampled_from([0.0, 0.5, 1.0, 1e3]))
def test_threshold_keeps_exactly_the_entries_at_or_above(row, t):
    out = Threshold(t).roundtrip(torch.tensor([row], dtype=torch.float32))[0][0].tolist()
    for v, o in zip(np.float32(row).tolist(), out):
        assert o == (v if abs(v) >= t else 0.0)


def test_qsgd_known_messages():
    x, u = torch.tensor([[3.0, -4.0, 0.0, 0.0]]), torch.tensor([[0.1, 0.7, 0.5, 0.5]])
    # ||x|| = 5, s = 2: r = (1.2, 1.6, 0, 0); u = 0.1 < 0.2 rounds up to 2, u = 0.7 >= 0.6 stays at 1
    out, nbytes = QSGD(2, coding="fixed").roundtrip(x, u)
    assert out.tolist() == [[5.0, -2.5, 0.0, 0.0]] and nbytes.tolist() == [6]
    # 3-bit fields (sign, 2 level bits) LSB first: 0b100, 0b011, 0, 0 -> bits 001 110 000 000
    assert QSGD(2, coding="fixed").encode(x[0], u[0]) == struct.pack("<f", 5.0) + bytes([0b00011100, 0])
    # elias: dist 1 "0", + "0", level 2 "100"; dist 1 "0", - "1", level 1 "0"; end 4 - 1 = 3 "110"
    # stream 00100010110 -> bytes 0b01000100, 0b011
    assert QSGD(2).encode(x[0], u[0]) == struct.pack("<f", 5.0) + bytes([0b01000100, 0b011])
    assert QSGD(2).roundtrip(x, u)[0].tolist() == out.tolist()
    zero = QSGD(2).encode(torch.zeros(4), u[0])
    assert zero == struct.pack("<f", 0.0) + bytes([0b010101])  # only the end marker omega(4 + 1) = 101010


def test_uniform_known_values():
    x, u = torch.tensor([[0.0, 1.0, 0.25, 0.5]]), torch.tensor([[0.9, 0.9, 0.5, 0.4]])
    # lo 0, hi 1, 4 levels of step 1/3: r = (0, 3, 0.75, 1.5) -> codes 0, 3, 1 (0.5 < 0.75), 2 (0.4 < 0.5)
    out, nbytes = Uniform(2).roundtrip(x, u)
    assert torch.equal(out, torch.tensor([[0.0, 1.0, 1 / 3, 2 / 3]])) and nbytes.tolist() == [9]
    assert Uniform(2).encode(x[0], u[0]) == struct.pack("<2f", 0.0, 1.0) + bytes([0 | 3 << 2 | 1 << 4 | 2 << 6])
    # fl(hi / 7) < hi / 7 for this hi, so (hi - lo) / step lands a hair above 7: the top code still caps at 7
    hi = 7.682218074798584
    top, _ = Uniform(3).roundtrip(torch.tensor([[0.0, hi]]), torch.zeros(1, 2))
    assert Uniform(3).encode(torch.tensor([0.0, hi]), torch.zeros(2)) == struct.pack("<2f", 0.0, hi) + bytes([7 << 3])
    assert top.tolist() == [[0.0, pytest.approx(hi)]]
    const = torch.full((1, 5), -2.5)
    assert Uniform(4).roundtrip(const, u.new_full((1, 5), 0.99))[0].tolist() == const.tolist()


def test_terngrad_known_values():
    x, u = torch.tensor([[2.0, -1.0, 0.5, 0.0]]), torch.tensor([[0.99, 0.4, 0.3, 0.0]])
    # s = 2, P(b = 1) = (1, 0.5, 0.25, 0)
    out, nbytes = TernGrad().roundtrip(x, u)
    assert out.tolist() == [[2.0, -2.0, 0.0, 0.0]] and nbytes.tolist() == [5]
    assert TernGrad().encode(x[0], u[0]) == struct.pack("<f", 2.0) + bytes([1 | 2 << 2])


def test_scaled_sign_known_values_zero_is_positive():
    x = torch.tensor([[1.0, -2.0, 0.0, 3.0, -2.0]])
    out, nbytes = ScaledSign().roundtrip(x)
    a = np.float32(8 / 5)
    assert out.tolist() == [[a, -a, a, a, -a]] and nbytes.tolist() == [5]
    assert ScaledSign().encode(x[0]) == struct.pack("<f", 8 / 5) + bytes([0b10010])
    assert ScaledSign().roundtrip(torch.zeros(2, 3))[0].tolist() == [[0.0] * 3] * 2


# ---- statistics ----------------------------------------------------------------------------------
X = torch.tensor([0.3, -1.2, 0.0, 2.5, -0.05, 0.7, 0.7, -2.0])
DRAWS = 20_000


def frac(r):
    return r - np.floor(r)


def variances(codec, x):
    """The exact per-coordinate variance of the codec's output for input x (float64)."""
    x = x.double().numpy()
    d = x.size
    if isinstance(codec, QSGD):
        norm = np.linalg.norm(x)
        f = frac(codec.levels * np.abs(x) / norm)
        return (norm / codec.levels) ** 2 * f * (1 - f)
    if isinstance(codec, Uniform):
        step = (x.max() - x.min()) / codec.top
        f = frac((x - x.min()) / step)
        return step**2 * f * (1 - f)
    if isinstance(codec, TernGrad):
        return np.abs(x).max() * np.abs(x) - x**2
    return x**2 * (d / codec.k_for(d) - 1)  # randk: x_i d/k with probability k/d


def within_5_standard_errors(codec, x, rand):
    """|mean of DRAWS outputs - x| <= 5 sqrt(var / DRAWS) per coordinate, + 1e-6 max|x| for fp32 rounding.

    Per coordinate a 5-sigma miss has probability ~6e-7 for an unbiased codec (CLT)."""
    out, _ = codec.roundtrip(x.expand(DRAWS, -1), rand)
    err = (out.double().mean(0) - x.double()).abs().numpy()
    tol = 5 * np.sqrt(variances(codec, x) / DRAWS) + 1e-6 * x.abs().max().item()
    return bool((err <= tol).all())


UNBIASED = {
    "qsgd-1": QSGD(1),
    "qsgd-3": QSGD(3),
    "uniform-1": Uniform(1),
    "uniform-3": Uniform(3),
    "terngrad": TernGrad(),
    "randk-3-unbiased": RandK(k=3, unbiased=True),
}


@pytest.mark.parametrize("codec", UNBIASED.values(), ids=UNBIASED.keys())
def test_unbiased_codecs_average_to_x(codec):
    assert within_5_standard_errors(codec, X, draw(codec, DRAWS, X.numel(), seed=11))


def test_the_unbiasedness_check_catches_biased_codecs():
    # rand_k without the d/k scale, and QSGD rounding to nearest (every u = 0.5)
    assert not within_5_standard_errors(RandK(k=3), X, draw(RandK(k=3), DRAWS, 8))
    assert not within_5_standard_errors(QSGD(3), X, torch.full((DRAWS, 8), 0.5))


@pytest.mark.parametrize("s", [1, 2, 8])
@pytest.mark.parametrize("kind", ["gaussian", "flat", "spiky"])
def test_qsgd_variance_matches_and_respects_the_bound(s, kind):
    """E||Q(x) - x||^2 = (||x|| / s)^2 sum_i f_i (1 - f_i) (f_i the fractional part of s|x_i|/||x||),
    estimated from 4,000 draws within 5 standard errors, and <= min(d/s^2, sqrt(d)/s) ||x||^2 (Lemma 3.1)."""
    d, n = 64, 4000
    g = torch.Generator().manual_seed(s)
    x = {
        "gaussian": torch.randn(d, generator=g),
        "flat": torch.where(torch.rand(d, generator=g) < 0.5, -1.0, 1.0),  # the worst case for s = 1
        "spiky": torch.cat([torch.tensor([30.0]), torch.randn(d - 1, generator=g)]),
    }[kind]
    codec = QSGD(s)
    out, _ = codec.roundtrip(x.expand(n, d), codec.draw(n, d, g))
    sq = ((out.double() - x.double()) ** 2).sum(1)
    exact = variances(codec, x).sum()
    assert abs(sq.mean().item() - exact) <= 5 * sq.std().item() / math.sqrt(n) + 1e-9
    bound = min(d / s**2, math.sqrt(d) / s) * x.double().square().sum().item()
    assert exact <= bound and sq.mean().item() <= bound
    if kind == "flat" and s == 1:
        assert exact == pytest.approx(7 / 8 * bound)  # r_i = 1/8: d f(1-f) = 7 against sqrt(d) = 8


# randk keeping everything draws the same indices whatever the seed
STOCHASTIC = {name: c for name, c in CODECS.items() if c.stochastic and name != "randk-all-indices"}


@pytest.mark.parametrize("codec", STOCHASTIC.values(), ids=STOCHASTIC.keys())
def test_same_seed_same_output(codec):
    x = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))
    a, b, c = (draw(codec, 3, 100, seed) for seed in (7, 7, 8))
    ta, tb, tc = (as_tensor(r) for r in (a, b, c))  # the quantisers' draws are computed on demand
    assert torch.equal(ta, tb) and not torch.equal(ta, tc)
    assert torch.equal(codec.roundtrip(x, a)[0], codec.roundtrip(x, b)[0])
    assert not torch.equal(codec.roundtrip(x, a)[0], codec.roundtrip(x, c)[0])
    assert codec.encode(x[0], a[0]) == codec.encode(x[0], b[0])


# ---- Elias omega and bit packing -----------------------------------------------------------------
def omega_string(n):
    values, widths = omega_fields(np.array([n]))
    return "".join(format(int(v), f"0{w}b") for v, w in zip(values[0], widths[0]) if w)


def test_elias_omega_codewords():
    known = {1: "0", 2: "100", 3: "110", 4: "101000", 7: "101110", 8: "1110000", 16: "10100100000"}
    assert {n: omega_string(n) for n in known} == known
    ns = list(range(1, 3000)) + [2**31 - 1, 2**40 + 3, 2**52]
    assert omega_lengths(torch.tensor(ns)).tolist() == [len(omega_string(n)) for n in ns]
    # past 4096 values below 2**22 the lengths come from a lookup table: the same numbers
    many = torch.cat(
        [torch.arange(1, 20_000), torch.randint(1, 2**22, (5000,), generator=torch.Generator().manual_seed(0))]
    )
    assert omega_lengths(many).tolist() == [len(omega_string(int(n))) for n in many]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 2**50), max_size=30))
def test_omega_stream_round_trips(ns):
    values, widths = omega_fields(np.array(ns, dtype=np.int64))
    data = pack_fields(values, widths)
    assert len(data) == -(-int(omega_lengths(torch.tensor(ns, dtype=torch.int64)).sum()) // 8)
    reader = BitReader(data, "t")
    assert [reader.omega() for _ in ns] == ns
    reader.finish()


def test_fixed_width_fields_are_lsb_first():
    assert pack_uints(np.array([1, 2, 3]), 2) == bytes([0b111001])
    assert pack_uints(np.array([200, 7]), 8) == bytes([200, 7])


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
def test_short_long_and_empty_messages_are_refused(codec):
    x = batch(9, seed=1)
    rand = draw(codec, 9, 9)
    for i in range(9):
        msg = codec.encode(x[i], row_of(rand, i))
        for bad in (msg[:-1], msg + b"\x00", b""):
            with pytest.raises(ValueError):
                codec.decode(bad, 9, row_of(rand, i))


def test_corrupt_messages_are_refused():
    def refused(codec, data, d, match, rand=None):
        with pytest.raises(ValueError, match=match):
            codec.decode(data, d, rand)

    five = struct.pack("<f", 1.0)
    refused(QSGD(4, coding="fixed"), five + pack_uints([5 << 1, 0], 4), 2, "level above")
    refused(QSGD(4, coding="fixed"), five + pack_uints([1, 0], 4), 2, "negative zero")
    end = omega_fields(np.array([4]))
    refused(QSGD(4), five + pack_fields(*end), 2, "end marker points at index 3")
    entry = pack_fields(np.array([0, 0, 0b100]), np.array([1, 1, 3]))  # index 0: omega(1), sign +, omega(2)
    refused(QSGD(1), five + entry, 2, "level 2 above s=1")
    refused(QSGD(4), five + bytes([0b10000011]), 2, "expected zero padding")  # omega(3) = 110, then a stray 1
    refused(QSGD(4), struct.pack("<f", -1.0) + b"\x00", 1, "negative norm")
    refused(QSGD(4), struct.pack("<f", float("nan")) + b"\x00", 1, "non-finite")
    refused(TernGrad(), five + bytes([0b11]), 1, "code 3")
    refused(ScaledSign(), five + bytes([0xFF, 0b10]), 9, "non-zero padding")
    refused(Uniform(2), struct.pack("<2f", 1.0, 0.0) + b"\x00", 2, "above hi")
    refused(Threshold(0.1), struct.pack("<I", 4) + bytes(4) + bytes(16), 3, "k=4 entries for d=3")
    refused(Threshold(0.1), struct.pack("<I", 1) + bytes([3]) + five, 3, "does not hold")
    refused(Threshold(0.1), struct.pack("<I", 1) + b"\x80", 3, "ends inside a varint")
    refused(RandK(k=1), five, 3, "pass rand")
    refused(RandK(k=1), five, 3, "ascending indices", rand=torch.tensor([3]))
    refused(RandK(k=2, shared_seed=False), struct.pack("<I", 1) + bytes([0]) + five, 3, "expected k=2")


def test_bad_rand_and_options_are_refused():
    x = torch.ones(2, 4)
    for codec in (QSGD(2), Uniform(2), TernGrad(), RandK(k=2)):
        with pytest.raises(ValueError, match="pass rand"):
            codec.roundtrip(x)
    with pytest.raises(ValueError, match="rand of shape"):
        QSGD(2).roundtrip(x, torch.rand(2, 3))
    with pytest.raises(ValueError, match="ascending indices"):
        RandK(k=2).roundtrip(x, torch.tensor([[1, 0], [0, 1]]))
    for make, match in [
        (lambda: RandK(), "exactly one of fraction and k"),
        (lambda: QSGD(0), "levels=0"),
        (lambda: QSGD(2, coding="huffman"), "coding='huffman'"),
        (lambda: Uniform(17), "bits=17"),
        (lambda: Threshold(-1.0), "threshold=-1.0"),
    ]:
        with pytest.raises(ValueError, match=match):
            make()
    assert not ScaledSign.stochastic and not Threshold.stochastic  # deterministic: roundtrip(x) alone
    assert torch.equal(ScaledSign().roundtrip(x)[0], x) and torch.equal(Threshold(0.0).roundtrip(x)[0], x)


# ---- the comparison-free kernels (stochastic rounding, TernGrad's Bernoulli, row norms) ---------
def _stochastic_round_by_definition(r: np.ndarray, u: np.ndarray) -> np.ndarray:
    low = np.floor(r)
    return low + (u < r - low)  # the module's definition, with numpy's comparison


def _below(v: float) -> float:
    return float(np.nextafter(np.float32(v), np.float32(0)))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.floats(0, 2**23, width=32), st.integers(0, 300).map(float)),
            st.one_of(st.floats(0, 1, exclude_max=True, width=32), st.sampled_from([0.0, _below(1.0)])),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_stochastic_round_equals_its_definition(pairs):
    """``ceil(f - u)`` stands for ``[u < f]`` exactly, including ``u == f`` and ``u`` an ulp below."""
    from fedbench.compress.quantize import stochastic_round

    r = np.array([p[0] for p in pairs], np.float32)
    u = np.array([p[1] for p in pairs], np.float32)
    frac = r - np.floor(r)  # the edges: u equal to the fraction, and one ulp below it
    r, u = np.concatenate([r, r, r]), np.concatenate([u, frac, np.nextafter(frac, np.float32(-1)).clip(0)])
    expected = _stochastic_round_by_definition(r, u)
    got = stochastic_round(torch.from_numpy(r.copy()), torch.from_numpy(u)).numpy()
    np.testing.assert_array_equal(got, expected)
    assert not np.signbit(got).any()  # no -0


def test_stochastic_round_by_hand():
    from fedbench.compress.quantize import stochastic_round

    r = torch.tensor([2.25, 2.25, 2.25, 0.0, 3.0, 0.5])
    u = torch.tensor([0.0, 0.25, 0.2499999, 0.0, 0.999, 0.5])
    # 2 + [0 < .25], 2 + [.25 < .25], 2 + [.2499999 < .25], 0 + [0 < 0], 3 + [.999 < 0], 0 + [.5 < .5]
    assert stochastic_round(r, u).tolist() == [3.0, 2.0, 3.0, 0.0, 3.0, 0.0]


def test_terngrad_keeps_a_coordinate_iff_u_is_below_its_ratio():
    """``b_i = [u_i < |x_i| / s]`` at the edges: ``u`` equal to the ratio drops, an ulp below keeps."""
    x = torch.tensor([[4.0, -1.0, 1.0, -2.0, 0.0, -0.0]])  # s = 4: ratios 1, .25, .25, .5, 0, 0
    u = torch.tensor([[0.9999999, 0.25, _below(0.25), 0.5, 0.0, 0.0]])
    scale, t = TernGrad().quantize(x, u)
    assert scale.tolist() == [[4.0]]
    assert t.tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0, 0.0]] and not torch.signbit(t).any()


@pytest.mark.parametrize("n", [1, 3, 17])
def test_row_norms_of_a_row_alone_equal_its_norm_in_a_batch(n):
    from fedbench.compress._bits import row_distances, row_norms

    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, 100_003, generator=g) * torch.logspace(-4, 4, n).view(n, 1)
    y = torch.randn(n, 100_003, generator=g)
    norms = row_norms(x)
    assert norms.shape == (n, 1) and norms.dtype == torch.float32
    for i in range(n):
        assert torch.equal(row_norms(x[i : i + 1]), norms[i : i + 1])
    # against fp64 by numpy: an fp32 sum of 1e5 squares is good to a few 1e-7 (1.006e-6 seen)
    exact = np.sqrt((x.double().numpy() ** 2).sum(1))
    np.testing.assert_allclose(norms[:, 0].numpy(), exact, rtol=4e-6)
    np.testing.assert_allclose(row_distances(x, y).numpy(), np.linalg.norm((x - y).double().numpy(), axis=1), rtol=4e-6)
    empty = torch.zeros(0, 5)
    assert row_norms(empty).shape == (0, 1) and row_distances(empty, empty).shape == (0,)


def test_flat_nonzero_of_floats_treats_minus_zero_as_zero():
    from fedbench.compress._bits import flat_nonzero

    q = torch.tensor([[0.0, -0.0, 2.0], [float("nan"), 0.0, -1.0]])
    assert flat_nonzero(q).tolist() == [2, 3, 5]
    assert flat_nonzero(q != 0).tolist() == [2, 3, 5]
