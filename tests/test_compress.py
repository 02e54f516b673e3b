"""Codecs: the fast path equals encode-then-decode, its byte count equals the encoded length, and
each scheme's values are checked against hand-computed cases."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbench.compress import BF16, FP16, TopK
from fedbench.compress.topk import decode_varints, encode_varint, varint_lengths

CODECS = [FP16(), BF16(), TopK(fraction=0.1), TopK(k=3, index_coding="bitmask"), TopK(k=1), TopK(fraction=1.0)]
IDS = ["fp16", "bf16", "topk-0.1-varint", "topk-3-bitmask", "topk-1", "topk-all"]


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@pytest.mark.parametrize("d", [1, 7, 8, 9, 300, 2000])
def test_fast_path_equals_wire_path_and_bytes_are_exact(codec, d):
    g = torch.Generator().manual_seed(d)
    x = torch.randn(4, d, generator=g) * torch.logspace(-3, 3, 4).view(4, 1)
    x[1, : d // 2] = 0.0  # ties at zero: the lower index wins
    fast, nbytes = codec.roundtrip(x)
    assert fast.shape == x.shape and nbytes.shape == (4,) and nbytes.dtype == torch.int64
    for i in range(4):
        msg = codec.encode(x[i])
        assert len(msg) == int(nbytes[i])
        assert torch.equal(codec.decode(msg, d), fast[i])


def test_fp16_and_bf16_known_values():
    x = torch.tensor([[1 / 3, 65504.0, 70000.0, -2.0]])
    assert FP16().roundtrip(x)[0].tolist() == [[0.333251953125, 65504.0, float("inf"), -2.0]]
    assert BF16().roundtrip(x)[0].tolist() == [[0.333984375, 65536.0, 70144.0, -2.0]]
    # little-endian halves: 1.0 is 0x3C00 in fp16 and 0x3F80 in bf16
    assert FP16().encode(torch.tensor([1.0])) == b"\x00\x3c" and BF16().encode(torch.tensor([1.0])) == b"\x80\x3f"


def test_topk_keeps_exactly_the_k_largest_magnitudes_ties_to_the_lower_index():
    x = torch.tensor([[0.5, -3.0, 2.0, -2.0, 0.1, 2.0]])
    out, nbytes = TopK(k=3).roundtrip(x)
    assert out.tolist() == [[0.0, -3.0, 2.0, -2.0, 0.0, 0.0]]  # |2.0| three times: indices 2 and 3 win
    # 4 (k) + varints of index 1, gap 0, gap 0 (3 bytes) + 3 fp32 values
    assert int(nbytes[0]) == 4 + 3 + 12
    msg = TopK(k=3).encode(x[0])
    assert msg == struct.pack("<I", 3) + bytes([1, 0, 0]) + struct.pack("<3f", -3.0, 2.0, -2.0)
    bitmask = TopK(k=3, index_coding="bitmask").encode(x[0])
    assert bitmask == struct.pack("<I", 3) + bytes([0b00001110]) + struct.pack("<3f", -3.0, 2.0, -2.0)


def test_topk_k_from_fraction():
    assert [TopK(fraction=f).k_for(d) for f, d in [(0.01, 1000), (0.01, 10), (0.5, 3), (1.0, 7)]] == [10, 1, 2, 7]
    with pytest.raises(ValueError, match="exactly one of fraction and k"):
        TopK()
    with pytest.raises(ValueError, match="index_coding='delta'"):
        TopK(k=1, index_coding="delta")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**62))
def test_varints_round_trip_and_lengths(value):
    data = encode_varint(value)
    assert decode_varints(data, 1, 0) == ([value], len(data))
    assert int(varint_lengths(torch.tensor([value]))[0]) == len(data)
    assert len(data) == max(1, -(-value.bit_length() // 7))  # ceil(bits / 7), at least one byte


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=200), st.integers(1, 50))
def test_topk_property_fast_equals_wire(values, k):
    row = torch.tensor(values, dtype=torch.float32)
    codec = TopK(k=k)
    fast, nbytes = codec.roundtrip(row.view(1, -1))
    msg = codec.encode(row)
    assert len(msg) == int(nbytes[0]) and torch.equal(codec.decode(msg, row.numel()), fast[0])
    kept = int((fast[0] != 0).sum())
    assert kept <= min(k, row.numel())
    # every dropped magnitude is <= every kept one
    mask = np.zeros(row.numel(), bool)
    mask[codec.select(row.view(1, -1))[0].numpy()] = True
    if (~mask).any():
        assert row.abs()[torch.from_numpy(~mask)].max() <= row.abs()[torch.from_numpy(mask)].min()


def test_corrupt_messages_are_refused():
    with pytest.raises(ValueError, match="^topk: message shorter than its header$"):
        TopK(k=1).decode(b"\x01\x00\x00", 4)
    with pytest.raises(ValueError, match="^topk: k=0 in the message, expected 1 for d=4$"):
        TopK(k=1).decode(struct.pack("<I", 0), 4)  # a header alone
    with pytest.raises(ValueError, match="^topk: message ends inside a varint$"):
        TopK(k=1).decode(struct.pack("<I", 1) + b"\x80", 300)  # a continuation bit, then nothing
    msg = TopK(k=2).encode(torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="does not hold k=2"):
        TopK(k=2).decode(msg[:-1], 3)
    with pytest.raises(ValueError, match="expected 6"):
        FP16().decode(b"\x00" * 5, 3)


# ---- the codecs in the round pipeline (config groups uplink / downlink) ----------------------------
PIPE = ["num_clients=5", "clients_per_round=3", "partition=iid", "model=logreg", "progress=false", "rounds=2"]
D = 8 * 8 * 10 + 10  # logreg on 8x8 digits


def sim_after_one_round(*overrides):
    from fedbench.config import compose, validate
    from fedbench.simulation import Simulation

    sim = Simulation(validate(compose(*PIPE, *overrides)))
    w0 = sim.params.clone()
    row = sim.step()
    return sim, w0, row


def test_uplink_and_downlink_bytes_come_from_the_codecs():
    _, _, plain = sim_after_one_round()
    assert plain["uplink_bytes"] == 3 * 4 * D and plain["downlink_bytes"] == 3 * 4 * D
    _, _, half = sim_after_one_round("uplink=fp16", "downlink=bf16")
    assert half["uplink_bytes"] == 3 * 2 * D and half["downlink_bytes"] == 3 * 2 * D
    assert half["uplink_compression"] == 2.0
    _, _, sparse = sim_after_one_round("uplink=topk", "uplink.k=13", "uplink.index_coding=bitmask")
    assert sparse["uplink_bytes"] == 3 * (4 + -(-D // 8) + 4 * 13)


def test_topk_keeping_everything_changes_nothing_but_the_bytes():
    plain, _, a = sim_after_one_round()
    full, _, b = sim_after_one_round("uplink=topk", f"uplink.k={D}")
    assert torch.equal(plain.params, full.params) and a["test_acc"] == b["test_acc"]
    assert b["uplink_bytes"] == 3 * (4 + D + 4 * D)  # first index 0 and every gap 0: one byte each
    assert b["uplink_rel_error"] == 0.0


def test_the_server_averages_the_decoded_updates():
    """Round 1's local training does not depend on the codec: the server's step must equal the
    weighted mean of the top-k of the plain run's updates, top-k done here with numpy."""
    plain, w0, _ = sim_after_one_round()
    sparse, _, row = sim_after_one_round("uplink=topk", "uplink.k=50")
    u = plain.last_record.updates.numpy()
    hand = np.zeros_like(u)
    for i, r in enumerate(u):
        keep = np.argsort(-np.abs(r), kind="stable")[:50]
        hand[i, keep] = r[keep]
    n = plain.last_record.num_samples.astype(np.float64)
    expected = w0.numpy() + (hand * n[:, None]).sum(0) / n.sum()
    np.testing.assert_allclose(sparse.params.numpy(), expected, rtol=1e-5, atol=1e-7)
    rel = np.linalg.norm(hand - u, axis=1) / np.linalg.norm(u, axis=1)
    assert row["uplink_rel_error"] == pytest.approx(rel.mean(), rel=1e-5)


def test_clients_train_from_the_decoded_model(monkeypatch):
    from fedbench.engine.vmap import VmapEngine

    seen = []
    real = VmapEngine.train

    def spy(self, w0, *args, **kwargs):
        seen.append(w0.clone())
        return real(self, w0, *args, **kwargs)

    monkeypatch.setattr(VmapEngine, "train", spy)
    _, w0, _ = sim_after_one_round("downlink=fp16")
    assert torch.equal(seen[0], w0.half().float()) and not torch.equal(seen[0], w0)


def test_optional_stages_default_to_none_in_a_dict_config():
    from fedbench.config import ConfigError, compose, validate

    cfg = {k: v for k, v in dict(compose()).items() if k not in ("uplink", "downlink")}
    run = validate(cfg)
    assert run.uplink.name == "none" and run.downlink.name == "none"
    with pytest.raises(ConfigError, match="^model: missing config group; allowed: "):
        validate({k: v for k, v in cfg.items() if k != "model"})


# ---- error feedback (fedbench/compress/feedback.py) ---------------------------------------------
def test_error_feedback_by_hand_with_top1():
    from fedbench.compress import feedback

    top1 = TopK(k=1).roundtrip
    x1, x2 = torch.tensor([[3.0, -1.0, 2.0]]), torch.tensor([[1.0, 1.0, 1.0]])
    sent, nbytes, e = feedback.ef(x1, torch.zeros(1, 3), top1)
    assert sent.tolist() == [[3.0, 0.0, 0.0]] and e.tolist() == [[0.0, -1.0, 2.0]] and int(nbytes[0]) == 4 + 1 + 4
    sent, _, e = feedback.ef(x2, e, top1)  # corrected [1, 0, 3]
    assert sent.tolist() == [[0.0, 0.0, 3.0]] and e.tolist() == [[1.0, 0.0, 0.0]]
    agg, _, g = feedback.ef21(x1, torch.zeros(1, 3), top1)
    assert agg.tolist() == g.tolist() == [[3.0, 0.0, 0.0]]
    agg, _, g = feedback.ef21(x2, g, top1)  # C([-2, 1, 1]) = [-2, 0, 0]
    assert agg.tolist() == g.tolist() == [[1.0, 0.0, 0.0]]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(-10, 10, width=32), min_size=6, max_size=6), min_size=1, max_size=6))
def test_error_feedback_loses_nothing(rounds):
    """EF telescopes: everything sent plus the residual left is everything the client computed."""
    from fedbench.compress import feedback

    codec = TopK(k=2).roundtrip
    e = torch.zeros(1, 6)
    total_sent = torch.zeros(1, 6)
    total = torch.zeros(1, 6)
    for r in rounds:
        x = torch.tensor([r])
        sent, _, e = feedback.ef(x, e, codec)
        total_sent += sent
        total += x
    torch.testing.assert_close(total_sent + e, total, atol=1e-3, rtol=1e-5)


def test_error_feedback_state_lives_only_for_participants_and_is_checkpointed():
    sim, _, _ = sim_after_one_round("uplink=topk", "uplink.k=20", "uplink.error_feedback=ef")
    chosen = sorted(int(c) for c in sim.last_record.clients)
    assert sim.client_state.clients("uplink_ef") == chosen
    residual = sim.client_state.get("uplink_ef", np.array(chosen), D, "cpu")
    assert float(residual.norm()) > 0
    from fedbench.config import compose, validate
    from fedbench.simulation import Simulation

    over = [*PIPE, "uplink=topk", "uplink.k=20", "uplink.error_feedback=ef21"]
    a = Simulation(validate(compose(*over)))
    a.step()
    b = Simulation(validate(compose(*over)))
    b.load_state_dict(a.state_dict())
    a.step()
    b.step()
    assert torch.equal(a.params, b.params)


def test_error_feedback_with_a_lossless_codec_changes_nothing():
    plain, _, a = sim_after_one_round("uplink=topk", f"uplink.k={D}")
    for mode in ("ef", "ef21"):
        fed, _, b = sim_after_one_round("uplink=topk", f"uplink.k={D}", f"uplink.error_feedback={mode}")
        torch.testing.assert_close(fed.params, plain.params)
        assert b["ef_residual_norm"] == pytest.approx(0.0, abs=1e-6)


UPLINKS = {
    "randk": ["uplink.k=30"],
    "randk_indices": ["uplink=randk", "uplink.k=30", "uplink.shared_seed=false", "uplink.unbiased=true"],
    "threshold": ["uplink.threshold=0.01"],
    "qsgd": ["uplink.levels=4"],
    "qsgd_fixed": ["uplink=qsgd", "uplink.coding=fixed"],
    "uniform": ["uplink.bits=3"],
    "terngrad": [],
    "sign": [],
    "stc": ["uplink.k=20", "uplink.error_feedback=none"],
}


@pytest.mark.parametrize("option", sorted(UPLINKS))
def test_every_uplink_codec_in_the_round_uses_the_compress_stream_and_counts_its_bytes(option):
    """The round's updates go through the codec with randomness from the ``compress`` stream keyed
    by round: the same message lengths and decoded rows as calling the codec by hand."""
    from fedbench.registry import entry
    from fedbench.rng import torch_generator

    over = UPLINKS[option] if option.startswith(("randk_", "qsgd_")) else [f"uplink={option}", *UPLINKS[option]]
    plain, _, _ = sim_after_one_round()
    sim, w0, row = sim_after_one_round(*over)
    x = plain.last_record.updates
    codec = entry("uplink", sim.run.uplink.name).impl(sim.run.uplink)
    if getattr(codec, "stochastic", False):
        expected, nbytes = codec.roundtrip(x, codec.draw(*x.shape, torch_generator(0, "compress", 1, 0)))
    else:
        expected, nbytes = codec.roundtrip(x)
    assert row["uplink_bytes"] == int(nbytes.sum())
    torch.testing.assert_close(sim.last_record.updates, expected)
    again, _, row2 = sim_after_one_round(*over)
    assert torch.equal(again.params, sim.params) and row2["uplink_bytes"] == row["uplink_bytes"]


def test_sign_majority_by_hand_and_in_the_round():
    from fedbench.compress.sign import MajoritySign

    codec = MajoritySign(0.5)
    x = torch.tensor([[0.2, -1.0, 3.0], [0.1, 2.0, -1.0], [-5.0, -0.1, 0.0]])
    signs, nbytes = codec.roundtrip(x)
    assert signs.tolist() == [[1, -1, 1], [1, 1, -1], [-1, -1, 1]] and nbytes.tolist() == [1, 1, 1]
    assert codec.vote(signs).tolist() == [0.5, -0.5, 0.5]
    assert codec.vote(signs[:2]).tolist() == [0.5, 0.0, 0.0]  # ties give 0
    for row, s in zip(x, signs):
        assert torch.equal(codec.decode(codec.encode(row), 3), s) and len(codec.encode(row)) == 1
    plain, _, _ = sim_after_one_round()
    sim, w0, row = sim_after_one_round("uplink=sign_majority", "uplink.scale=0.01")
    expected = 0.01 * torch.sign(torch.where(plain.last_record.updates < 0, -1.0, 1.0).sum(0))
    torch.testing.assert_close(sim.params - w0, expected)
    assert row["uplink_bytes"] == 3 * -(-D // 8)


def test_sign_majority_replaces_the_aggregator_so_a_robust_one_is_a_config_error():
    from fedbench.config import ConfigError, compose, validate

    with pytest.raises(ConfigError, match="uplink=sign_majority: the server takes the elementwise majority"):
        validate(compose(*PIPE, "uplink=sign_majority", "aggregator=median"))


def test_powersgd_in_the_round_keeps_each_clients_q_and_counts_its_factors():
    """mlp on 8x8 digits: each weight matrix (m, n) with m n > r (m + n) goes as rank-1 factors
    P (m) and Q (n), the biases as fp32; round 1 starts every client from the compress stream's
    Gaussian Q, and each client's last Q is its row of the per-client store."""
    from fedbench.rng import torch_generator

    over = ["model=mlp", "uplink=powersgd", "uplink.error_feedback=none"]
    plain, _, _ = sim_after_one_round("model=mlp")
    sim, _, row = sim_after_one_round(*over)
    codec = sim.uplink_codec
    shapes = sim.layout.shapes
    expected_bytes = 4 * sum(
        (s[0] + math.prod(s[1:])) if len(s) > 1 and s[0] * math.prod(s[1:]) > s[0] + math.prod(s[1:]) else math.prod(s)
        for s in shapes
    )
    assert row["uplink_bytes"] == 3 * expected_bytes
    x = plain.last_record.updates
    decoded, nbytes, q = codec.roundtrip(x, torch.zeros(3, codec.state_dim), torch_generator(0, "compress", 1, 0))
    torch.testing.assert_close(sim.last_record.updates, decoded)
    clients = sim.last_record.clients
    assert sim.client_state.clients("uplink_powersgd") == sorted(int(c) for c in clients)
    torch.testing.assert_close(sim.client_state.get("uplink_powersgd", clients, codec.state_dim, "cpu"), q)


def test_scaffold_sends_both_uploads_through_the_codec_and_counts_both():
    per_row = 4 + -(-D // 8) + 4 * 13  # top-13 with a bitmask
    plain, _, _ = sim_after_one_round("algorithm=scaffold")
    sim, _, row = sim_after_one_round("algorithm=scaffold", "uplink=topk", "uplink.k=13", "uplink.index_coding=bitmask")
    rec = sim.last_record
    assert rec.bytes["uplink/update"] == rec.bytes["uplink/delta_c"] == 3 * per_row
    assert row["uplink_bytes"] == 2 * 3 * per_row
    assert int((rec.payloads["delta_c"] != 0).sum(dim=1).max()) <= 13
    # the decoded delta_c is top-13 of the delta_c the clients computed (same start: downlink is fp32)
    expected, _ = TopK(k=13, index_coding="bitmask").roundtrip(plain.last_record.payloads["delta_c"])
    torch.testing.assert_close(rec.payloads["delta_c"], expected)


def test_fednova_small_uploads_stay_fp32():
    sim, _, row = sim_after_one_round("algorithm=fednova", "uplink=fp16")
    assert sim.last_record.bytes["uplink/a_norm"] == 3 * 4
    assert row["uplink_bytes"] == 3 * 2 * D + 3 * 4


def test_topk_with_nonfinite_rows_keeps_k_entries_and_nan_counts_as_largest():
    x = torch.tensor([[float("nan"), 1.0, -3.0, float("inf")], [float("nan")] * 4, [0.0, 0.0, 2.0, 0.0]])
    idx = TopK(k=2).select(x)
    assert idx.tolist() == [[0, 3], [0, 1], [0, 2]]  # NaN and inf largest; ties to the lower index


def _topk_reference(x: torch.Tensor, k: int) -> np.ndarray:
    """Indices of the k largest magnitudes per row, NaN largest, ties to the lower index (numpy)."""
    m = np.abs(x.numpy())
    m = np.where(np.isnan(m), np.inf, m)
    return np.stack([np.sort(np.lexsort((np.arange(len(r)), -r))[:k]) for r in m])


@pytest.mark.parametrize("case", ["gaussian", "ties", "nan", "zero_row", "periodic", "heavy_tail", "spikes", "fp64"])
def test_topk_candidate_search_selects_exactly_what_a_full_sort_does(case):
    """Rows long enough for the sampled-level shortcut (k >= 200): the same indices as a stable
    sort, including the cases where the shortcut must give up (a zero row: every entry ties; a
    pattern with the sample's period: the sample sees only small values)."""
    from fedbench.compress.topk import candidates

    g = torch.Generator().manual_seed(7)
    n, d, k = 3, 40_000, 400
    x = torch.randn(n, d, generator=g)
    if case == "ties":
        x = torch.round(x * 2) / 2
    elif case == "nan":
        x[1, 5:30] = float("nan")
    elif case == "zero_row":
        x[2] = 0.0
    elif case == "periodic":  # large values exactly off the sample's stride (k // 100 = 4)
        x = torch.full((n, d), 0.01)
        x[:, 1::4] = torch.rand(n, d // 4, generator=g) + 1
    elif case == "heavy_tail":
        x = torch.randn(n, d, generator=g) ** 5
    elif case == "spikes":  # 300 < k equal spikes, all where the sample looks: too few candidates
        x[1, ::4][:300] = 10.0
    elif case == "fp64":  # magnitudes that fp32 would merge: the candidates keep the input's precision
        x = (1 + torch.arange(d, dtype=torch.float64) * 1e-12).expand(n, d).contiguous()
        x[:, ::7] += 1e-3
    np.testing.assert_array_equal(TopK(k=k).select(x).numpy(), _topk_reference(x, k))
    mag = torch.nan_to_num(x.abs(), nan=math.inf)
    found = candidates(mag, k)
    if case in ("gaussian", "heavy_tail"):
        assert found is not None and found[0].shape[1] < d // 10  # the shortcut did run
    if case in ("zero_row", "periodic", "spikes"):
        assert found is None
    if case == "fp64":
        assert found is not None and found[1].dtype == torch.float64


def test_topk_varint_gap_at_the_one_byte_boundary():
    """Kept indices 0 and 128: gaps 0 and 127 take one varint byte each (128 would take two)."""
    x = torch.zeros(1, 300)
    x[0, 0], x[0, 128], x[0, 257] = 5.0, -4.0, 1.0
    codec = TopK(k=2)
    _, nbytes = codec.roundtrip(x)
    assert int(nbytes[0]) == 4 + 1 + 1 + 2 * 4 == len(codec.encode(x[0]))
    _, nbytes = TopK(k=3).roundtrip(x)  # third gap 257 - 128 - 1 = 128: two bytes
    assert int(nbytes[0]) == 4 + 1 + 1 + 2 + 3 * 4 == len(TopK(k=3).encode(x[0]))


@pytest.mark.parametrize("first, index_bytes", [(127, 1), (128, 2)])
def test_topk_first_index_varint_boundary(first, index_bytes):
    x = torch.zeros(1, 300)
    x[0, first] = 1.0
    _, nbytes = TopK(k=1).roundtrip(x)
    assert int(nbytes[0]) == 4 + index_bytes + 4 == len(TopK(k=1).encode(x[0]))


def test_topk_config_errors_exactly():
    with pytest.raises(ValueError, match="^topk: give exactly one of fraction and k$"):
        TopK(fraction=0.1, k=3)
    with pytest.raises(ValueError, match="^topk: index_coding='delta'; allowed: varint, bitmask$"):
        TopK(k=1, index_coding="delta")


def test_client_state_hands_out_copies_that_feedback_may_overwrite():
    """Error feedback overwrites the state it is given: the store's rows must not change with it."""
    from fedbench.compress import feedback
    from fedbench.state import ClientState

    store = ClientState()
    store.set("e", np.array([4, 9]), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    got = store.get("e", np.array([9, 4]), 2, "cpu")  # every client known: the fast path
    assert got.tolist() == [[3.0, 4.0], [1.0, 2.0]]
    sent, _, e = feedback.ef(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), got, TopK(k=1).roundtrip)
    assert e.data_ptr() == got.data_ptr()  # overwritten in place, as documented
    assert sent.tolist() == [[4.0, 0.0], [0.0, 3.0]] and e.tolist() == [[0.0, 4.0], [1.0, 0.0]]
    assert store.get("e", np.array([4, 9]), 2, "cpu").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    mixed = store.get("e", np.array([9, 5]), 2, "cpu")  # one unknown client: zeros for it
    assert mixed.tolist() == [[3.0, 4.0], [0.0, 0.0]]
