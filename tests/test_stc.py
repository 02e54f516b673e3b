"""Sparse Ternary Compression (uplink): the fast path equals encode-then-decode bit for bit with exact
byte counts, hand-computed messages, mu and the ternary values, the Golomb parameter, and refusal of
bad messages and options."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbench.compress import STC, TopK
from fedbench.compress.stc import golomb_parameter

CODECS = {
    "k1": STC(k=1),
    "k3": STC(k=3),
    "f0.01": STC(fraction=0.01),
    "f0.1": STC(fraction=0.1),
    "f0.5": STC(fraction=0.5),
    "f0.9": STC(fraction=0.9),
    "all": STC(fraction=1.0),
}


def bits_of(t):
    return t.contiguous().view(torch.int32)  # bit patterns: -0.0 and NaN compare exactly


def assert_fast_equals_wire(codec, x):
    n, d = x.shape
    fast, nbytes = codec.roundtrip(x)
    assert fast.shape == (n, d) and fast.dtype == torch.float32
    assert nbytes.shape == (n,) and nbytes.dtype == torch.int64 and nbytes.device.type == "cpu"
    for i in range(n):
        msg = codec.encode(x[i])
        assert len(msg) == int(nbytes[i]), (i, len(msg), int(nbytes[i]))
        assert torch.equal(bits_of(codec.decode(msg, d)), bits_of(fast[i])), i
    return fast, nbytes


def batch(d, seed):
    """Rows at several scales, a zero row, repeated magnitudes (ties), a half-zero row, a row with
    only two non-zeros far apart (fewer than k for most codecs; long gaps), -0.0 entries."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(10, d, generator=g) * torch.logspace(-3, 3, 10).view(10, 1)
    x[2] = 0.0
    x[4] = torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0]).repeat(d)[:d]
    x[6, : d // 2] = 0.0
    x[7] = 0.0
    x[7, 0], x[7, -1] = -2.0, 3.0
    x[8, ::3] = -0.0
    return x


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
@pytest.mark.parametrize("d", [1, 7, 8, 300, 5000])
def test_fast_path_equals_wire_path_and_bytes_are_exact(codec, d):
    assert_fast_equals_wire(codec, batch(d, seed=d))


values = st.one_of(st.floats(-1e6, 1e6, width=32), st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0**-20]))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(CODECS)), st.lists(values, min_size=1, max_size=80))
def test_property_fast_equals_wire(name, row):
    x = torch.tensor([row, [v * 3 for v in row]], dtype=torch.float32)
    assert_fast_equals_wire(CODECS[name], x)


def test_nonfinite_rows_go_through_both_paths_alike():
    x = torch.tensor([[1.0, float("inf"), -2.0, 0.0], [float("nan"), -1.0, 0.5, 3.0], [-float("inf"), 1.0, 0, 0]])
    fast, _ = assert_fast_equals_wire(STC(k=2), x)
    assert fast[0].tolist() == [0.0, math.inf, -math.inf, 0.0]  # mu = inf
    assert fast[1].isnan().tolist() == [True, False, False, True]  # the NaN counts as largest


# ---- messages and values by hand -------------------------------------------------------------------
def test_known_message_with_quotient_and_remainder():
    x = torch.zeros(16)
    x[0], x[5], x[14] = -3.0, 0.5, 1.0
    codec = STC(k=2)
    # p = 2/16: log(phi - 1) / log(7/8) = 3.60, log2 = 1.85, b = 1 + 1 = 2
    assert codec.b_for(16) == 2
    # kept 0 and 14, mu = (3 + 1) / 2 = 2
    out, nbytes = codec.roundtrip(x.view(1, 16))
    expected = torch.zeros(16)
    expected[0], expected[14] = -2.0, 2.0
    assert torch.equal(out[0], expected)
    # gap 0 - (-1) = 1: g - 1 = 0, q 0, r 0 -> "0" "00"
    # gap 14 - 0 = 14: g - 1 = 13, q 3, r 1 -> "1110" "10" (remainder least significant bit first)
    # signs: -, + -> "1" "0"
    # stream 000 111010 10 (11 bits) -> byte 0: bits 0..7 = 0,0,0,1,1,1,0,1; byte 1: bits 8..10 = 0,1,0
    msg = codec.encode(x)
    assert msg == struct.pack("<fI", 2.0, 2) + bytes([0b10111000, 0b010])
    assert nbytes.tolist() == [len(msg)] == [8 + math.ceil((3 + 6 + 2) / 8)]
    assert torch.equal(codec.decode(msg, 16), expected)


def test_known_message_zero_among_the_top_k_is_not_sent():
    x = torch.tensor([0.0, 4.0, 0.0, 0.0])
    codec = STC(k=2)
    # top-2: index 1 and, of the tied zeros, index 0; mu = (4 + 0) / 2 = 2; sign(0) = 0: one entry sent
    out, nbytes = codec.roundtrip(x.view(1, 4))
    assert out.tolist() == [[0.0, 2.0, 0.0, 0.0]]
    # p = 1/2: log2(0.481 / 0.693) = -0.53, b = 1 - 1 = 0 (unary): gap 2 -> q = 1 -> "10"; sign "0"
    msg = codec.encode(x)
    assert codec.b_for(4) == 0
    assert msg == struct.pack("<fI", 2.0, 1) + bytes([0b001])
    assert nbytes.tolist() == [len(msg)] == [9]


def test_zero_row_is_the_header_alone():
    codec = STC(fraction=0.1)
    msg = codec.encode(torch.zeros(50))
    assert msg == struct.pack("<fI", 0.0, 0)
    out, nbytes = codec.roundtrip(torch.zeros(3, 50))
    assert nbytes.tolist() == [8] * 3 and torch.equal(bits_of(out), bits_of(torch.zeros(3, 50)))


def test_every_position_sent_uses_one_bit_plus_sign_when_dense():
    # fraction 1: b = 0, every gap 1 -> codeword "0" (bits 0..19), then the signs of 1, -2, 3, -4, ...
    # (bits 20..39: odd indices negative): 40 bits = 5 bytes
    x = torch.arange(1.0, 21.0) * torch.tensor([1.0, -1.0]).repeat(10)
    msg = STC(fraction=1.0).encode(x)
    assert msg[8:] == bytes([0, 0, 0b10100000, 0b10101010, 0b10101010])
    assert STC(fraction=1.0).roundtrip(x.view(1, 20))[0][0].abs().unique().tolist() == [10.5]


@pytest.mark.parametrize("seed", range(4))
def test_mu_is_the_mean_magnitude_of_the_top_k_and_values_are_ternary(seed):
    g = torch.Generator().manual_seed(seed)
    n, d, k = 6, 200, 17
    x = torch.randn(n, d, generator=g)
    x[0, :190] = 0.0  # fewer than k non-zeros: zeros count in mu
    out, _ = STC(k=k).roundtrip(x)
    idx = TopK(k=k).select(x)
    for i in range(n):
        mu = np.float32(np.abs(x[i, idx[i]].double().numpy()).mean())
        kept = torch.zeros(d, dtype=torch.bool)
        kept[idx[i]] = True
        assert set(out[i].unique().tolist()) <= {-mu, 0.0, mu}
        assert torch.equal(out[i], torch.where(kept, mu * torch.sign(x[i]), 0.0))
        assert ((out[i] != 0) == (kept & (x[i] != 0))).all()
    assert (out[0] != 0).sum() == 10 and out[0].abs().max() < x[0].abs().max()


def test_selection_is_topk_ties_to_the_lower_index():
    x = torch.tensor([[0.5, -3.0, 2.0, -2.0, 0.1, 2.0]])
    out, _ = STC(k=3).roundtrip(x)
    mu = np.float32(7 / 3)
    assert out.tolist() == [[0.0, -mu, mu, -mu, 0.0, 0.0]]


def test_byte_count_formula():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 1000, generator=g)
    codec = STC(fraction=0.03)
    _, nbytes = codec.roundtrip(x)
    b = codec.b_for(1000)
    for i in range(5):
        pos = TopK(fraction=0.03).select(x[i : i + 1])[0].numpy()
        gaps = np.diff(pos, prepend=-1)
        bits = int((((gaps - 1) >> b) + 1 + b).sum()) + pos.size
        assert int(nbytes[i]) == 8 + math.ceil(bits / 8)


# ---- the Golomb parameter --------------------------------------------------------------------------
def test_golomb_parameter_matches_the_formula():
    phi = (1 + math.sqrt(5)) / 2
    ps = [1e-5, 0.001, 0.01, 0.04, 0.1, 0.25, 0.375, 0.5, 0.6]
    formula = [1 + math.floor(math.log2(math.log(phi - 1) / math.log(1 - p))) for p in ps]
    assert [golomb_parameter(p) for p in ps] == formula == [16, 9, 6, 4, 3, 1, 1, 0, 0]
    # above p = phi - 1 the formula goes negative, and at p = 1 it is undefined: clamped to 0
    assert 1 + math.floor(math.log2(math.log(phi - 1) / math.log(1 - 0.7))) == -1
    assert [golomb_parameter(p) for p in (0.7, 0.99, 1.0)] == [0, 0, 0]
    assert STC(fraction=0.01).b_for(10_000) == 6 and STC(k=1).b_for(1) == 0
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="sparsity rate"):
            golomb_parameter(bad)


# ---- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
def test_short_long_and_empty_messages_are_refused(codec):
    x = batch(9, seed=1)
    for i in range(x.shape[0]):
        msg = codec.encode(x[i])
        for bad in (msg[:-1], msg + b"\x00", b"", msg[:7]):
            with pytest.raises(ValueError):
                codec.decode(bad, 9)


def test_corrupt_messages_are_refused():
    def refused(data, d, match):
        with pytest.raises(ValueError, match=match):
            STC(k=2).decode(data, d)

    # d = 16, k = 2, b = 2 (the known message above): 0b10111000, 0b010
    refused(struct.pack("<fI", 2.0, 3) + bytes(2), 16, "m=3 entries above k=2")
    refused(struct.pack("<fI", -2.0, 2) + bytes([0b10111000, 0b010]), 16, "mu=-2.0")
    refused(struct.pack("<fI", 2.0, 2) + bytes([0b10111000, 0b1010]), 16, "expected zero padding")
    # second gap q 4, r 1 -> position 0 + 4 * 4 + 1 + 1 = 18 >= 16
    refused(struct.pack("<fI", 2.0, 2) + bytes([0b01111000, 0b0101]), 16, "position 18 out of range")
    refused(struct.pack("<fI", 2.0, 2) + bytes([0xFF, 0xFF]), 16, "ends inside a codeword")
    refused(struct.pack("<fI", 2.0, 2) + bytes([0b10111000]), 16, "ends inside a codeword")
    refused(struct.pack("<fI", 2.0, 2) + bytes([0b00001000]), 16, "ends inside the sign bits")  # "000" "1000": 7 bits
    refused(struct.pack("<f", 2.0), 16, "shorter than its 8-byte header")
    # the known message decoded with a d whose last position is out of range
    refused(struct.pack("<fI", 2.0, 2) + bytes([0b10111000, 0b010]), 14, "position 14 out of range")


def test_bad_options_are_refused():
    for make, match in [
        (lambda: STC(), "exactly one of fraction and k"),
        (lambda: STC(fraction=0.1, k=3), "exactly one of fraction and k"),
        (lambda: STC(fraction=0.0), "fraction=0.0"),
        (lambda: STC(fraction=float("nan")), "fraction=nan"),
        (lambda: STC(k=0), "k=0"),
    ]:
        with pytest.raises(ValueError, match=match):
            make()
    assert STC.name == "stc" and not STC.stochastic
    assert [STC(fraction=f).k_for(d) for f, d in [(0.01, 1000), (0.01, 10), (0.5, 3), (1.0, 7)]] == [10, 1, 2, 7]
    assert STC(k=50).k_for(7) == 7
