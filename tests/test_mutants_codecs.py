"""Tests written to kill surviving mutants of `fedbench.compress` (see docs/testing.md)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from fedbench.compress import QSGD, STC, RandK, ScaledSign, TernGrad, Threshold, Uniform
from fedbench.compress.powersgd import PowerSGD, orthonormalize
from fedbench.compress.sign import MajoritySign

NAN, INF = float("nan"), float("inf")


def refused(call, message: str, error: type = ValueError) -> None:
    """``call()`` raises ``error`` whose text is exactly ``message``."""
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message


def f32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


# ---- randk.py --------------------------------------------------------------------------------------
def test_randk_wire_path_names_the_fault_exactly():
    for make in (lambda: RandK(), lambda: RandK(fraction=0.1, k=2)):
        refused(make, "randk: give exactly one of fraction and k")
    refused(lambda: RandK(k=2).encode(torch.ones(5)), "randk: stochastic codec, pass rand from draw()")
    refused(lambda: RandK(k=2).decode(bytes(8), 5), "randk: stochastic codec, pass rand from draw()")
    # shared seed: k = 2 values of 4 bytes
    refused(lambda: RandK(k=2).decode(bytes(4), 5, torch.tensor([1, 3])), "randk: 4 bytes for k=2, expected 8")
    # indices sent: the sparse message's faults carry the codec's name
    sparse = RandK(k=2, shared_seed=False)
    refused(lambda: sparse.decode(b"\x00\x00", 5), "randk: message shorter than its header")
    refused(lambda: sparse.decode(struct.pack("<I", 6) + bytes(6 + 24), 5), "randk: k=6 entries for d=5")


def test_randk_draw_on_a_cpu_generator_is_numpys_choice_row_by_row():
    # the documented draw: PCG64 seeded with the generator's seed, choice(d, k, replace=False) per row, sorted
    rng = np.random.default_rng(7)
    expected = [sorted(rng.choice(10, 3, replace=False, shuffle=False).tolist()) for _ in range(2)]
    assert expected == [[5, 6, 7], [5, 7, 9]]
    assert RandK(k=3).draw(2, 10, torch.Generator().manual_seed(7)).tolist() == expected


@pytest.mark.parametrize("first, index_bytes", [(127, 1), (128, 2)])
def test_randk_first_index_varint_boundary(first, index_bytes):
    x = torch.arange(1.0, 301.0).view(1, -1)
    codec, rand = RandK(k=1, shared_seed=False), torch.tensor([[first]])
    varint = bytes([first]) if first < 128 else bytes([first - 128 + 0x80, 1])
    assert codec.encode(x[0], rand[0]) == struct.pack("<I", 1) + varint + f32(first + 1.0)
    assert codec.roundtrip(x, rand)[1].tolist() == [4 + index_bytes + 4]


# ---- threshold.py ----------------------------------------------------------------------------------
def test_sparse_message_faults_exactly():
    refused(lambda: Threshold(0.1).decode(b"", 3), "threshold: message shorter than its header")
    # k is a uint32: 2**31 is a count above d, not a negative one
    refused(lambda: Threshold(0.1).decode(struct.pack("<I", 2**31), 3), "threshold: k=2147483648 entries for d=3")
    # gaps 0, 0, 2 (each < d = 3) put the third index at 0, 1, then 1 + 2 + 1 = 4
    refused(
        lambda: Threshold(0.1).decode(struct.pack("<I", 3) + bytes([0, 0, 2]) + bytes(12), 3),
        "threshold: index 4 out of range for d=3",
    )
    # gaps 0, 2: indices 0 and 3, the last index equal to d
    refused(
        lambda: Threshold(0.1).decode(struct.pack("<I", 2) + bytes([0, 2]) + bytes(8), 3),
        "threshold: index 3 out of range for d=3",
    )


def test_threshold_byte_count_at_the_varint_boundary():
    # kept: index 126 (first gap 126, one varint byte) and 255 (gap 255 - 126 - 1 = 128, two bytes)
    x = torch.zeros(1, 300)
    x[0, 126], x[0, 255] = 1.0, -2.0
    msg = struct.pack("<I", 2) + bytes([126, 0x80, 0x01]) + f32(1.0, -2.0)
    assert Threshold(0.5).encode(x[0]) == msg
    assert Threshold(0.5).roundtrip(x)[1].tolist() == [len(msg)] == [15]


def test_threshold_zero_keeps_minus_zero_and_a_dropped_nan_decodes_to_zero():
    # threshold 0 keeps every entry as it is, -0.0 included (its fp32 bits 00 00 00 80 are what is sent)
    x = torch.tensor([[-0.0, 1.0]])
    out, nbytes = Threshold(0.0).roundtrip(x)
    assert torch.signbit(out).tolist() == [[True, False]] and out.tolist() == [[0.0, 1.0]]
    assert Threshold(0.0).encode(x[0]) == struct.pack("<I", 2) + bytes([0, 0]) + f32(-0.0, 1.0)
    assert nbytes.tolist() == [14]
    # a NaN is below any threshold (NaN >= t is false): dropped, and decoded as 0, not NaN * 0
    out, nbytes = Threshold(0.5).roundtrip(torch.tensor([[NAN, 1.0, -0.25, INF]]))
    assert out.tolist() == [[0.0, 1.0, 0.0, INF]] and nbytes.tolist() == [4 + 2 + 8]  # gaps 1 and 1
    out, _ = Threshold(0.5).roundtrip(torch.tensor([[NAN, -0.25]]))
    assert out.tolist() == [[0.0, 0.0]] and not torch.signbit(out).any()


# ---- sign.py ---------------------------------------------------------------------------------------
def test_sign_decoders_name_the_codec_and_the_fault_exactly():
    # d = 16 sign bits are 2 bytes; one byte is refused by the bit unpacker, naming the codec
    refused(lambda: MajoritySign(1.0).decode(b"\x00", 16), "sign_majority: 1 bytes of 1-bit codes for d=16, expected 2")
    refused(lambda: ScaledSign().decode(b"\x00\x00\x80", 1), "scaled_sign: message shorter than its header")
    # exactly the 4-byte header is not short: its missing sign byte is what is wrong
    refused(lambda: ScaledSign().decode(f32(1.0), 1), "scaled_sign: 0 bytes of 1-bit codes for d=1, expected 1")
    refused(
        lambda: ScaledSign().decode(f32(1.0) + b"\x00", 9), "scaled_sign: 1 bytes of 1-bit codes for d=9, expected 2"
    )
    # the scale must be finite and >= 0: a negative finite one and +inf are refused, not only NaN
    for scale, text in [(-1.0, "-1.0"), (INF, "inf"), (NAN, "nan")]:
        refused(
            lambda scale=scale: ScaledSign().decode(f32(scale) + b"\x00", 1),
            f"scaled_sign: scale {text}, expected a finite number >= 0",
        )


# ---- quantize.py -----------------------------------------------------------------------------------
def test_uniform_and_terngrad_decoders_name_the_codec_and_the_fault_exactly():
    refused(lambda: Uniform(2).decode(bytes(7), 2), "uniform: message shorter than its header")
    refused(lambda: Uniform(2).decode(f32(NAN, 1.0) + b"\x00", 2), "uniform: non-finite header [nan, 1.0]")
    # d = 2 codes of 2 bits: one byte after the 8-byte header
    refused(lambda: Uniform(2).decode(f32(0.0, 1.0), 2), "uniform: 0 bytes of 2-bit codes for d=2, expected 1")
    refused(lambda: TernGrad().decode(bytes(3), 2), "terngrad: message shorter than its header")
    refused(lambda: TernGrad().decode(f32(INF) + b"\x00", 2), "terngrad: non-finite header [inf]")
    refused(lambda: TernGrad().decode(f32(-1.0) + b"\x00", 3), "terngrad: negative scale -1.0")
    refused(lambda: TernGrad().decode(f32(1.0), 3), "terngrad: 0 bytes of 2-bit codes for d=3, expected 1")
    # codes 0, 0, 3 (LSB first: 0b11_00_00)
    refused(lambda: TernGrad().decode(f32(1.0) + bytes([0b110000]), 3), "terngrad: code 3 is not a ternary value")


def test_qsgd_decoder_names_the_fault_exactly():
    refused(lambda: QSGD(4).decode(b"\x00\x00", 1), "qsgd: message shorter than its header")
    # fixed coding at s = 4: fields of 1 + 3 bits, two of them one byte
    refused(lambda: QSGD(4, coding="fixed").decode(f32(1.0), 2), "qsgd: 0 bytes of 4-bit codes for d=2, expected 1")
    refused(lambda: QSGD(4).decode(f32(1.0), 2), "qsgd: message ends inside a codeword")
    # omega(3) = 110 ends the row of d = 2 at once; 0b0000011 alone is the zero row, a stray 1 in the padding is not
    assert QSGD(4).decode(f32(1.0) + bytes([0b011]), 2).tolist() == [0.0, 0.0]
    refused(
        lambda: QSGD(4).decode(f32(1.0) + bytes([0b10000011]), 2),
        "qsgd: 5 bits after the last codeword, expected zero padding",
    )
    # all ones: omega groups 11 (3), 1111 (15), then a group of 16 digits that the 8 bits do not hold
    refused(lambda: QSGD(4).decode(f32(1.0) + b"\xff", 2), "qsgd: message ends inside a codeword")


@pytest.mark.parametrize("codec", [QSGD(2), Uniform(2), TernGrad()], ids=["qsgd", "uniform", "terngrad"])
def test_stochastic_quantizers_name_a_missing_or_misshapen_rand_exactly(codec):
    for call in (lambda: codec.encode(torch.ones(3)), lambda: codec.roundtrip(torch.ones(1, 3))):
        refused(call, f"{codec.name}: stochastic codec, pass rand from draw()")
    for call in (
        lambda: codec.encode(torch.ones(3), torch.ones(2)),
        lambda: codec.roundtrip(torch.ones(1, 3), torch.ones(1, 2)),
    ):
        refused(call, f"{codec.name}: rand of shape (1, 2) for x of shape (1, 3)")


def test_terngrad_divides_by_a_scale_below_one():
    # s = 0.5: ratios |x_i| / s = 1 and 0.5, both above their u (0.6, 0.3): both kept as +-s
    out, nbytes = TernGrad().roundtrip(torch.tensor([[0.5, -0.25]]), torch.tensor([[0.6, 0.3]]))
    assert out.tolist() == [[0.5, -0.5]] and nbytes.tolist() == [4 + 1]


def test_uniform_accepts_one_and_sixteen_bits_and_refuses_the_rest_exactly():
    # 1 bit: lo = 1, hi = 4, step 3; r = 0, 1/3, 1; u = .5, .2, .5 -> codes 0, 1 (.2 < 1/3), 1
    x, u = torch.tensor([[1.0, 2.0, 4.0]]), torch.tensor([[0.5, 0.2, 0.5]])
    out, nbytes = Uniform(1).roundtrip(x, u)
    assert out.tolist() == [[1.0, 4.0, 4.0]] and nbytes.tolist() == [8 + 1]
    assert Uniform(1).encode(x[0], u[0]) == f32(1.0, 4.0) + bytes([0b110])
    # 16 bits: codes 0 and 2**16 - 1, two little-endian bytes each
    x, u = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.5]])
    assert Uniform(16).roundtrip(x, u)[1].tolist() == [8 + 4]
    assert Uniform(16).encode(x[0], u[0]) == f32(0.0, 1.0) + bytes([0, 0, 255, 255])
    for bits in (0, 17, 1.5):
        refused(lambda bits=bits: Uniform(bits), f"uniform: bits={bits}, expected an integer in [1, 16]")


# ---- powersgd.py -----------------------------------------------------------------------------------
def test_powersgd_default_rank_is_one():
    # a 4 x 3 matrix at rank 1: P (4) and Q (3) are 7 floats < 12, so compressed: 28 bytes, Q of 3 values
    # (at rank 2, 14 floats >= 12 would send it as 48 bytes of fp32)
    codec = PowerSGD([(4, 3)])
    assert (codec.rank, codec.row_bytes, codec.state_dim, codec.compressed) == (1, 28, 3, [True])


def test_powersgd_one_by_one_matrix_is_compressed_at_min_compression_zero():
    # m n = 1 > 0 * r (m + n): sent as P (1 value) and Q (1 value), 8 bytes; Q is 1 value of state
    codec = PowerSGD([(1, 1)], min_compression=0)
    assert (codec.row_bytes, codec.state_dim, codec.compressed) == (8, 1, [True])
    # M = [[3]], Q = [[2]]: P = normalize(6) = 1, Q = M^T P = 3, M_hat = 1 * 3
    out, nbytes, state = codec.roundtrip(torch.tensor([[3.0]]), torch.tensor([[2.0]]))
    assert out.tolist() == [[3.0]] and nbytes.tolist() == [8] and state.tolist() == [[3.0]]
    # no state yet: Q is drawn (a state of one value is no special case), P = sign(M Q) = +-1, Q = M P,
    # M_hat = P Q = M exactly; the new Q is +-M
    out, _, state = codec.roundtrip(torch.tensor([[3.0], [-2.0]]), None, torch.Generator().manual_seed(0))
    assert out.tolist() == [[3.0], [-2.0]] and state.abs().tolist() == [[3.0], [2.0]]


def test_orthonormalize_drops_a_dependent_column_whole_and_keeps_an_independent_one():
    """Column 2 minus its projection on column 1 keeps 1e-11 of its norm (<= 1e-10: dropped, every entry,
    also the tiny ones) or 1e-9 (kept, normalised to the unit vector e_2)."""
    p = torch.tensor([[[1.0, 1.0], [0.0, 1e-11], [0.0, 1e-30]]], dtype=torch.float64)
    assert orthonormalize(p).tolist() == [[[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]]
    p = torch.tensor([[[1.0, 1.0], [0.0, 1e-9], [0.0, 0.0]]], dtype=torch.float64)
    assert orthonormalize(p).tolist() == [[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]


def test_powersgd_wire_path_refuses_a_zero_column_in_any_layer():
    # two compressed layers, Q of 3 then of 5 values; only the second layer's Q is zero
    codec = PowerSGD([(4, 3), (2, 5)])
    q = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    refused(
        lambda: codec.encode(torch.ones(22), q),
        "powersgd: a zero column of Q (no state yet) needs a generator to draw it",
    )


# ---- stc.py ----------------------------------------------------------------------------------------
def test_stc_decoder_names_the_fault_exactly():
    """``fraction=1`` at ``d = 8``: ``k = 8`` and Golomb ``b = 0`` (unary gaps: ``g - 1`` ones, then a zero)."""
    for make in (lambda: STC(), lambda: STC(fraction=0.5, k=2)):
        refused(make, "stc: give exactly one of fraction and k")
    codec = STC(fraction=1.0)
    assert (codec.k_for(8), codec.b_for(8)) == (8, 0)
    head = struct.pack("<fI", 1.0, 1)  # mu = 1, m = 1 entry
    # position 7: gap 8, seven ones then the zero, exactly one byte; its sign bit is missing
    refused(lambda: codec.decode(head + bytes([0x7F]), 8), "stc: message ends inside the sign bits")
    assert codec.decode(head + bytes([0x7F, 0x01]), 8).tolist() == [0.0] * 7 + [-1.0]
    # m read as uint32: 2**31 is a count above k, not a negative one
    refused(lambda: codec.decode(struct.pack("<fI", 1.0, 2**31), 8), "stc: m=2147483648 entries above k=8 for d=8")
    # no entries and a whole byte of padding
    refused(
        lambda: codec.decode(struct.pack("<fI", 1.0, 0) + b"\x00", 8),
        "stc: 8 bits after the last codeword, expected zero padding",
    )


def test_qsgd_levels_of_a_row_with_norm_below_one_by_hand():
    """``r_i = s |x_i| / ||x||`` also when ``||x|| < 1``: x = (0.3, -0.4, 0), ||x|| = 0.5, s = 4 gives
    r = (2.4, 3.2, 0); with u = (0.5, 0.1, 0.3): 2 + [0.5 < 0.4] = 2, 3 + [0.1 < 0.2] = 4, 0; decoded
    (0.5 / 4) * (2, -4, 0) = (0.25, -0.5, 0). (Dividing by 1 instead would give levels 1, -2, 0.)"""
    codec = QSGD(4)
    x = torch.tensor([[0.3, -0.4, 0.0]])
    u = torch.tensor([[0.5, 0.1, 0.3]])
    norm, q = codec.quantize(x, u)
    assert norm.tolist() == [[0.5]] and q.tolist() == [[2.0, -4.0, 0.0]]
    decoded, _ = codec.roundtrip(x, u)
    assert decoded.tolist() == [[0.25, -0.5, 0.0]]


# ---- the uplink stage's keys and state (fedbench/compress/stage.py) ---------------------------------
def _record(r, clients, x, payload=None):
    from fedbench.round import RoundRecord

    rec = RoundRecord(round=r, clients=np.asarray(clients), num_samples=np.ones(len(clients), np.int64))
    rec.updates = x.clone()
    if payload is not None:
        rec.payloads = {"delta_c": payload.clone()}
    return rec


def test_stage_draws_each_upload_from_its_own_key():
    """The update's draws come from the ``compress`` stream keyed (round, 0), a payload's from
    (round, 1): equal inputs give different messages, each equal to the codec called by hand."""
    from fedbench.compress.stage import UplinkStage
    from fedbench.rng import torch_generator
    from fedbench.state import ClientState

    codec = QSGD(2)
    x = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    rec = _record(4, [0, 1, 2], x, payload=x)
    UplinkStage(codec, "none", 7, ClientState(), 50)(rec)
    for upload, got in ((0, rec.updates), (1, rec.payloads["delta_c"])):
        want, _ = codec.roundtrip(x, codec.draw(3, 50, torch_generator(7, "compress", 4, upload)))
        assert torch.equal(got, want), upload
    assert not torch.equal(rec.updates, rec.payloads["delta_c"])


def test_stage_warm_starts_powersgd_from_each_clients_last_q():
    """Round 2 starts from the ``Q`` each client sent in round 1 (kept in the store), not from
    fresh draws: the decoded update equals the codec called by hand with that state."""
    from fedbench.compress.stage import UplinkStage
    from fedbench.rng import torch_generator
    from fedbench.state import ClientState

    codec = PowerSGD([(6, 5)], rank=1)
    stage = UplinkStage(codec, "none", 3, ClientState(), 30)
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(2, 30, generator=g), torch.randn(2, 30, generator=g)
    stage(_record(1, [5, 9], x1))
    _, _, q1 = codec.roundtrip(x1, None, torch_generator(3, "compress", 1, 0))
    rec = _record(2, [5, 9], x2)
    stage(rec)
    warm, _, _ = codec.roundtrip(x2, q1, torch_generator(3, "compress", 2, 0))
    cold, _, _ = codec.roundtrip(x2, None, torch_generator(3, "compress", 2, 0))
    assert torch.equal(rec.updates, warm) and not torch.equal(rec.updates, cold)
