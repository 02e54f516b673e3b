"""Tests written to kill surviving mutants of `fedbench.compress` (see docs/testing.md)."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch

from fedbench.compress import QSGD, STC, RandK, ScaledSign, TernGrad, Threshold, Uniform
from fedbench.compress.powersgd import PowerSGD, orthonormalize
from fedbench.compress.sign import MajoritySign
from fedbench.config import ConfigError, compose, validate
from fedbench.registry import entry

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


# ---- the uplink stage's error feedback and metrics (fedbench/compress/stage.py) ----------------------
def _top1_stage(mode):
    from fedbench.compress.stage import UplinkStage
    from fedbench.compress.topk import TopK
    from fedbench.state import ClientState

    return UplinkStage(TopK(k=1), mode, 0, ClientState(), 4)


X1 = torch.tensor([[3.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # client 0 moves, client 1 does not
X2 = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])


def test_stage_without_error_feedback_metrics_by_hand():
    """top-1 of (3, 0, 4, 0) sends (0, 0, 4, 0): error ||(3, 0, 0, 0)|| = 3 over ||x|| = 5; the zero
    row sends zeros and is left out of the mean. Each message is 4 (count) + 1 (varint gap) + 4
    (value) = 9 bytes, 18 in all, against 2 * 4 * 4 = 32 bytes of fp32."""
    rec = _record(1, [0, 1], X1)
    metrics = _top1_stage("none")(rec)
    assert metrics == {"uplink_compression": 32 / 18, "uplink_rel_error": pytest.approx(0.6)}
    assert rec.updates.tolist() == [[0.0, 0.0, 4.0, 0.0], [0.0] * 4]
    assert rec.bytes == {"uplink/update": 18}


def test_stage_ef_keeps_each_clients_residual_across_rounds_by_hand():
    """``ef``: round 1 sends (0, 0, 4, 0) and keeps e = (3, 0, 0, 0) (mean ||e|| over the two clients
    (3 + 0) / 2 = 1.5; error 3 / 5). Round 2 corrects (0, 1, 0, 0) to (3, 1, 0, 0) and sends
    (3, 0, 0, 0), keeping (0, 1, 0, 0); client 1 sends (0, 0, 0, 2) whole: mean ||e|| = 0.5, error
    (1 / sqrt(10) + 0 / 2) / 2. Without the kept residual round 2 would send (0, 1, 0, 0)."""
    stage = _top1_stage("ef")
    m1 = stage(_record(1, [0, 1], X1))
    assert m1["ef_residual_norm"] == 1.5 and m1["uplink_rel_error"] == pytest.approx(0.6)
    rec = _record(2, [0, 1], X2)
    m2 = stage(rec)
    assert rec.updates.tolist() == [[3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]]
    assert m2["ef_residual_norm"] == 0.5
    assert m2["uplink_rel_error"] == pytest.approx((1 / math.sqrt(10) + 0 / 2) / 2)
    assert m2["uplink_compression"] == 32 / 18


def test_stage_ef21_keeps_each_clients_last_estimate_across_rounds_by_hand():
    """``ef21``: round 1 sends C(x1) = (0, 0, 4, 0) = g; the server lacks ||x1 - g|| = 3 (mean 1.5),
    error 3 / 5. Round 2: v = x2 - g = (0, 1, -4, 0) sends (0, 0, -4, 0), so g = (0, 0, 0, 0); client
    1 (g = 0) sends (0, 0, 0, 2). The server aggregates g; it lacks ||x2 - g|| = (1, 0), mean 0.5;
    error (1 / sqrt(17) + 0 / 2) / 2."""
    stage = _top1_stage("ef21")
    m1 = stage(_record(1, [0, 1], X1))
    assert m1["ef_residual_norm"] == 1.5 and m1["uplink_rel_error"] == pytest.approx(0.6)
    rec = _record(2, [0, 1], X2)
    m2 = stage(rec)
    assert rec.updates.tolist() == [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]]
    assert m2["ef_residual_norm"] == 0.5
    assert m2["uplink_rel_error"] == pytest.approx((1 / math.sqrt(17) + 0 / 2) / 2)


def test_stage_sends_payloads_of_the_update_shape_and_counts_them():
    """A ``(n, d)`` payload goes through top-1 too (no error feedback) and its 9-byte messages count
    under its name; one of another shape stays as it is, uncounted."""
    rec = _record(1, [0, 1], X1, payload=torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0]]))
    rec.payloads["a_norm"] = torch.tensor([7.0, 8.0])
    _top1_stage("ef")(rec)
    assert rec.payloads["delta_c"].tolist() == [[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0]]
    assert rec.payloads["a_norm"].tolist() == [7.0, 8.0]
    assert rec.bytes == {"uplink/update": 18, "uplink/delta_c": 18}


def test_stage_relative_error_counts_rows_with_a_norm_below_one_and_is_zero_without_movement():
    """(3, 0, 4, 0) / 8 has norm 0.625 (0.140625 + 0.25 = 0.390625 = 0.625**2): top-1 drops 0.375,
    relative error 0.375 / 0.625 = 0.6 although the norm is below 1. A round of zero updates has no
    row to average over: 0.0."""
    assert _top1_stage("none")(_record(1, [0, 1], X1 / 8))["uplink_rel_error"] == pytest.approx(0.6)
    assert _top1_stage("none")(_record(1, [0, 1], torch.zeros(2, 4))) == {
        "uplink_compression": 32 / 18,
        "uplink_rel_error": 0.0,
    }


def test_stage_sends_payloads_as_they_are_under_a_majority_vote():
    """Under ``sign_majority`` only the update is voted on (sign bits: 4 coordinates in 1 byte per
    client); a payload of the same shape is not reduced to signs nor counted here."""
    from fedbench.compress.stage import UplinkStage
    from fedbench.state import ClientState

    x = torch.tensor([[1.0, -2.0, 3.0, -4.0], [-1.0, 1.0, -1.0, 1.0]])
    payload = torch.tensor([[0.5, -0.25, 2.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    rec = _record(1, [0, 1], x, payload=payload)
    metrics = UplinkStage(MajoritySign(1.0), "none", 0, ClientState(), 4)(rec)
    assert rec.updates.tolist() == [[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]]
    assert torch.equal(rec.payloads["delta_c"], payload)
    assert rec.bytes == {"uplink/update": 2} and metrics["uplink_compression"] == 32 / 2


def test_stage_keeps_a_stateful_codecs_payload_state_under_the_documented_name():
    """PowerSGD's ``Q`` of a payload lives in the store as ``uplink_<codec>/<payload>`` (module
    docstring), next to the update's ``uplink_<codec>``; both rows of the round's clients."""
    from fedbench.compress.stage import UplinkStage
    from fedbench.state import ClientState

    store = ClientState()
    x = torch.randn(2, 30, generator=torch.Generator().manual_seed(2))
    UplinkStage(PowerSGD([(6, 5)], rank=1), "none", 3, store, 30)(_record(1, [5, 9], x, payload=-x))
    assert store.clients("uplink_powersgd") == [5, 9]
    assert store.clients("uplink_powersgd/delta_c") == [5, 9]


# ---- RandK._indices: the rand it accepts (fedbench/compress/randk.py) --------------------------------
def test_randk_refuses_a_bad_rand_exactly_and_accepts_the_extreme_indices():
    codec, x = RandK(k=2), torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    bad = "randk: rand must be 2 ascending indices below d=4 per row, as draw() gives"
    for rand in (
        torch.tensor([[0, 1, 2], [0, 1, 2]]),  # 3 indices per row
        torch.tensor([[0, 1], [0, 1]], dtype=torch.int32),  # right shape, not int64
        torch.tensor([[-1, 1], [0, 1]]),  # below 0
        torch.tensor([[0, 1], [0, 4]]),  # index d = 4
        torch.tensor([[1, 1], [0, 1]]),  # not strictly ascending
        torch.tensor([[2, 1], [0, 1]]),  # descending
    ):
        refused(lambda rand=rand: codec.roundtrip(x, rand), bad)
    # first index 0 and last index d - 1 = 3 are valid: the kept values, 4 bytes each (shared seed)
    out, nbytes = codec.roundtrip(x, torch.tensor([[0, 3], [0, 3]]))
    assert out.tolist() == [[1.0, 0.0, 0.0, 4.0], [5.0, 0.0, 0.0, 8.0]] and nbytes.tolist() == [8, 8]


# ---- QSGD.__init__: the levels and codings it accepts (fedbench/compress/quantize.py) -----------------
def test_qsgd_accepts_levels_below_two_to_the_24_and_names_the_rest_exactly():
    top = QSGD(2**24 - 1)  # the largest level count exact in fp32 integers, 24 bits wide
    assert top.levels == 2**24 - 1 and top.width == 24
    assert QSGD(1).width == 1 and QSGD(4.0).levels == 4 and QSGD(4.0).width == 3  # 4 = 0b100
    for levels in (0, 2**24, 2.5):
        refused(lambda levels=levels: QSGD(levels), f"qsgd: levels={levels}, expected an integer in [1, 2**24)")
    refused(lambda: QSGD(2, coding="huffman"), "qsgd: coding='huffman'; allowed: elias, fixed")


# ---- _bits.omega_fields: the documented (m, OMEGA_GROUPS + 1) layout ----------------------------------
def test_omega_fields_layout_by_hand():
    """16 -> "10" "100" "10000" "0": the chain 16 (5 digits) -> 4 (3 digits) -> 2 (2 digits) -> 1, written
    outermost group first into the last columns, then the closing 0; 1 -> "0" alone. Six columns
    (OMEGA_GROUPS + 1 = 5 + 1); the absent groups have width 0."""
    from fedbench.compress._bits import omega_fields

    values, widths = omega_fields(np.array([16, 1]))
    assert values.shape == widths.shape == (2, 6)
    assert widths.tolist() == [[0, 0, 2, 3, 5, 1], [0, 0, 0, 0, 0, 1]]
    assert [int(v) for v, w in zip(values[0], widths[0]) if w] == [2, 4, 16, 0]
    assert int(values[1, -1]) == 0


# ---- _bits.flat_distances ------------------------------------------------------------------------------
def test_flat_distances_by_hand_with_an_empty_row():
    """(3, 5) array with kept flat indices 0, 3 (row 0) and 12 (row 2, column 2): rows 0, 0, 2;
    distances 0 - (-1) = 1, 3 - 0 = 3, 2 - (-1) = 3; tails d - i_last: 5 - 3 = 2, none kept in row 1:
    d + 1 = 6, 5 - 2 = 3."""
    from fedbench.compress._bits import flat_distances

    rows, dist, tail = flat_distances(torch.tensor([0, 3, 12]), 3, 5)
    assert rows.tolist() == [0, 0, 2] and dist.tolist() == [1, 3, 3] and tail.tolist() == [2, 6, 3]
    # a row whose only kept index is column 0: tail d - 0 = 5
    assert flat_distances(torch.tensor([5]), 2, 5)[2].tolist() == [6, 5]


# ---- quantize._uniforms: rand is used as fp32 ----------------------------------------------------------
def test_a_float64_rand_is_rounded_to_fp32_first():
    """TernGrad of x = (1, 0.3f): s = 1, ratios r = (1, 0.3f). u = 0.3 given in fp64 rounds to the fp32
    0.3f = 0.30000001192..., and u < r is false for r = u: level 0, so the row decodes to (1, 0). Kept in
    fp64, 0.3 < 0.3f would keep the entry as s = 1."""
    x = torch.tensor([[1.0, 0.3]])
    out, _ = TernGrad().roundtrip(x, torch.tensor([[0.5, 0.3]], dtype=torch.float64))
    assert out.tolist() == [[1.0, 0.0]]


def test_topk_reads_its_header_count_unsigned():
    """The header's k is a little-endian uint32: bytes 00 00 00 80 are k = 2**31 = 2147483648 (read
    signed, they would be -2147483648), refused against the codec's k = 1 for d = 4."""
    from fedbench.compress.topk import TopK

    with pytest.raises(ValueError, match="^topk: k=2147483648 in the message, expected 1 for d=4$"):
        TopK(k=1).decode(b"\x00\x00\x00\x80", 4)


# ---- options._k: a set k overrides fraction --------------------------------------------------------
@pytest.mark.parametrize("name", ["topk", "randk", "stc"])
def test_sparsifier_options_pass_the_fraction_unless_k_is_set(name):
    """uplink.fraction=0.25 alone builds the codec with (fraction, k) = (0.25, None); with uplink.k=7 as
    well, k wins: (None, 7) (a codec given both refuses them)."""
    up = validate(compose(f"uplink={name}", "uplink.fraction=0.25")).uplink
    codec = entry("uplink", name).impl(up)
    assert (codec.fraction, codec.k) == (0.25, None)
    up = validate(compose(f"uplink={name}", "uplink.fraction=0.25", "uplink.k=7")).uplink
    codec = entry("uplink", name).impl(up)
    assert (codec.fraction, codec.k) == (None, 7)


# ---- topk.candidates: the documented output, padding included ------------------------------------------
def test_topk_candidates_pads_the_shorter_row_with_column_0_and_value_minus_1():
    """The documented contract of candidates(mag, k), checked in a way that holds for any sample size
    and margin (the shortcut's speed parameters): a superset of each row's k largest entries, as
    ascending columns and their values, every entry >= the smallest candidate included, padded with
    column 0 and value -1. k = 300, d = 4000: step = 3 and 8 k <= d, so the shortcut runs; the
    sampled columns are the multiples of 3 and the level L is a sampled value of row 0, mag = j.
    Row 1 is row 0 with the unsampled entries lowered by 1.5 (the same sample, the same L): of
    L + 1 and L + 2, only L + 2 - 1.5 >= L stays, so row 1 has exactly one candidate fewer and one
    padding entry. (At the coded margin: ks = ceil(1.5 * 100.05 + 3 * 10.0025 + 4) = 185,
    L = 3999 - 3 * 184 = 3447, 553 and 552 candidates.)"""
    from fedbench.compress.topk import candidates

    j = torch.arange(4000, dtype=torch.float32)
    row1 = torch.where(j % 3 == 0, j, (j - 1.5).clamp(min=0))
    mag = torch.stack([j, row1])
    found = candidates(mag, 300)
    assert found is not None
    cols, values = found
    assert cols.dtype == torch.int64 and values.dtype == torch.float32 and cols.shape == values.shape
    real_counts = []
    for i in range(2):
        c, v, m = cols[i].numpy(), values[i].numpy(), mag[i].numpy()
        r = int((v >= 0).sum())
        real_counts.append(r)
        assert (v[r:] == -1.0).all() and (c[r:] == 0).all()  # the padding: after the candidates
        assert (np.diff(c[:r]) > 0).all() and (v[:r] == m[c[:r]]).all()
        np.testing.assert_array_equal(c[:r], np.flatnonzero(m >= v[:r].min()))
        assert set(np.argsort(-m, kind="stable")[:300]) <= set(c[:r].tolist())
    assert real_counts[0] == cols.shape[1] == real_counts[1] + 1


@pytest.mark.parametrize("name", ["topk", "qsgd", "powersgd"])
def test_downlink_cache_rounds_error_says_what_null_means(name):
    """``options.both`` adds ``cache_rounds`` to every delta downlink with a note on ``null``; the
    whole message is the interface (``both`` runs at import: its mutants were checked one by one)."""
    want = (
        "downlink.cache_rounds=0: out of range; allowed: null or an integer >= 1 "
        "(null: every message since the client's last copy)"
    )
    with pytest.raises(ConfigError) as err:
        validate(compose(f"downlink={name}", "downlink.cache_rounds=0"))
    assert str(err.value) == want


def test_validated_options_print_as_their_direction():
    """A notebook prints the validated config: the downlink schema ``both`` derives from the uplink
    one is named for its direction (``UplinkTopK`` -> ``DownlinkTopK``)."""
    run = validate(compose("uplink=topk", "downlink=topk", "downlink.cache_rounds=3"))
    assert repr(run.uplink).startswith("UplinkTopK(name='topk', error_feedback='none', fraction=0.01")
    assert repr(run.downlink).startswith("DownlinkTopK(name='topk', error_feedback='none', fraction=0.01")
    assert repr(run.downlink).endswith("cache_rounds=3)")
