"""The downlink of the lossy schemes (fedbench/compress/downlink.py): each round's server step is
compressed once, every client applies the same message, a client downloads the messages it missed
(or the full fp32 model), and the server's residual obeys error feedback's identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedbench.compress import STC, TopK
from fedbench.compress.downlink import DownlinkStage
from fedbench.round import RoundRecord

PIPE = ["num_clients=6", "clients_per_round=3", "partition=iid", "model=logreg", "progress=false", "rounds=4"]
D = 8 * 8 * 10 + 10  # logreg on 8x8 digits


def sim(*overrides):
    from fedbench.config import compose, validate
    from fedbench.simulation import Simulation

    return Simulation(validate(compose(*PIPE, *overrides)))


# ---- what a client downloads, by hand ------------------------------------------------------------
def test_download_bytes_by_hand():
    stage = DownlinkStage(TopK(k=1), "none", None, 0, num_clients=5, dim=100)  # full model: 400 bytes
    stage.message_bytes = [10, 20, 30, 350]  # m_1 .. m_4
    stage.synced[:] = [0, 4, 3, 1, 2]  # client 0 never took part
    # round 5: client 1 missed m_4 (350); client 2 m_3 + m_4 (380); client 3 m_1..m_4 (410 > 400:
    # the full model); client 4 m_2..m_4 (400, not more than the full model)
    assert stage.download_bytes(np.arange(5), 5).tolist() == [400, 350, 380, 400, 400]
    stage.cache_rounds = 2  # the server keeps the last two messages: client 4 missed three
    assert stage.download_bytes(np.arange(5), 5).tolist() == [400, 350, 380, 400, 400]
    stage.message_bytes = [1, 2, 3, 4]
    assert stage.download_bytes(np.arange(5), 5).tolist() == [400, 4, 7, 400, 400]
    stage.cache_rounds = None
    assert stage.download_bytes(np.arange(5), 5).tolist() == [400, 4, 7, 10, 9]


def test_send_counts_the_downloads_and_marks_the_clients_up_to_date():
    stage = DownlinkStage(TopK(k=1), "none", None, 0, num_clients=4, dim=10)
    rec = RoundRecord(round=1, clients=np.array([0, 2]), num_samples=np.array([1, 1]))
    assert stage.send(rec) == {"downlink_compression": 1.0}
    assert rec.bytes == {"downlink/model": 80} and stage.synced.tolist() == [1, 0, 1, 0]
    stage.message_bytes = [12]
    rec = RoundRecord(round=2, clients=np.array([1, 2]), num_samples=np.array([1, 1]))
    m = stage.send(rec)
    assert rec.bytes == {"downlink/model": 40 + 12} and m["downlink_compression"] == pytest.approx(80 / 52)


def test_error_feedback_identity_and_the_message_is_the_codec_of_step_plus_residual():
    """m_t = C(Delta_t + e_{t-1}) and e_t = Delta_t + e_{t-1} - m_t, with C top-2 by hand."""
    stage = DownlinkStage(TopK(k=2), "ef", None, 0, num_clients=1, dim=5)
    step1 = torch.tensor([3.0, -1.0, 0.5, -4.0, 0.0])
    m1, met = stage.compress(step1, 1)
    assert m1.tolist() == [3.0, 0.0, 0.0, -4.0, 0.0]
    assert stage.residual.tolist() == [0.0, -1.0, 0.5, 0.0, 0.0]
    assert met["downlink_ef_residual_norm"] == pytest.approx(np.hypot(1, 0.5))
    assert met["downlink_rel_error"] == pytest.approx(np.hypot(1, 0.5) / np.linalg.norm(step1))
    step2 = torch.tensor([0.0, -1.5, 1.0, 0.0, 0.2])
    m2, _ = stage.compress(step2, 2)
    assert m2.tolist() == [0.0, -2.5, 1.5, 0.0, 0.0]  # the residual comes back
    torch.testing.assert_close(step1 + step2, m1 + m2 + stage.residual)  # nothing is lost
    assert stage.message_bytes == [len(TopK(k=2).encode(step1))] * 2
    plain = DownlinkStage(TopK(k=2), "none", None, 0, num_clients=1, dim=5)
    plain.compress(step1, 1)
    assert plain.compress(step2, 2)[0].tolist() == [0.0, -1.5, 1.0, 0.0, 0.0] and plain.residual is None


# ---- in the round --------------------------------------------------------------------------------
def test_the_public_model_moves_by_the_compressed_step_and_clients_train_from_it():
    """Round 1 trains from the same model under any downlink; the server's step is then the plain
    run's step, so the topk run's model moved by top-k of it (numpy), and round 2's clients start
    from that model."""
    plain = sim()
    w0 = plain.params.clone()
    plain.step()
    step = (plain.params - w0).numpy()
    down = sim("downlink=topk", "downlink.k=7")
    row = down.step()
    keep = np.argsort(-np.abs(step), kind="stable")[:7]
    hand = np.zeros_like(step)
    hand[keep] = step[keep]
    np.testing.assert_allclose((down.params - w0).numpy(), hand, rtol=1e-6, atol=1e-9)
    assert row["downlink_bytes"] == 3 * 4 * D  # nobody had a copy
    assert row["downlink_rel_error"] == pytest.approx(np.linalg.norm(hand - step) / np.linalg.norm(step), rel=1e-5)
    seen = []
    real = down.engine.train
    down.engine.train = lambda w, *a, **k: (seen.append(w.clone()), real(w, *a, **k))[1]
    public = down.params.clone()
    row2 = down.step()
    assert torch.equal(seen[0], public)
    # round 2: clients of round 1 download m_1 (its real encoded length), the others the full model
    again = {int(c) for c in down.last_record.clients} & set(plain_clients(1))
    m1 = len(TopK(k=7).encode(torch.as_tensor(step)))
    assert row2["downlink_bytes"] == len(again) * m1 + (3 - len(again)) * 4 * D


def plain_clients(r: int) -> list[int]:
    from fedbench.rng import numpy_rng

    return sorted(numpy_rng(0, "sampling", r).choice(6, 3, replace=False).tolist())


def test_ef_and_ef21_on_the_downlink_give_the_same_run():
    a, b = (
        sim("downlink=topk", "downlink.k=20", "downlink.error_feedback=ef"),
        sim("downlink=topk", "downlink.k=20", "downlink.error_feedback=ef21"),
    )
    for _ in range(3):
        ra, rb = a.step(), b.step()
        assert {k: v for k, v in ra.items() if not k.endswith("time_s")} == {
            k: v for k, v in rb.items() if not k.endswith("time_s")
        }
    assert torch.equal(a.params, b.params)


DOWNLINKS = {
    "topk": ["downlink.k=30"],
    "randk": ["downlink.k=30"],
    "threshold": ["downlink.threshold=0.02"],
    "qsgd": ["downlink.levels=4"],
    "uniform": ["downlink.bits=4"],
    "terngrad": [],
    "sign": ["downlink.error_feedback=ef"],
    "powersgd": [],
    "stc": ["downlink.k=30"],
}


@pytest.mark.parametrize("option", sorted(DOWNLINKS))
def test_every_downlink_scheme_sends_the_codec_message_of_the_step(option):
    """Two rounds; the model moves by exactly the codec's message of (step + residual), drawn from
    the ``downlink`` stream keyed by round, and repeated runs agree."""
    from fedbench.rng import torch_generator

    s = sim(f"downlink={option}", *DOWNLINKS[option], "model=mlp", "model.hidden=[16]")
    s.step()
    stage = s.downlink_stage
    before, residual, q = s.params.clone(), stage.residual, stage.q
    captured = {}
    real = stage.compress
    stage.compress = lambda step, r: (captured.setdefault("step", step.clone()), real(step, r))[1]
    row = s.step()
    v = captured["step"] + (0 if residual is None else residual)
    gen = torch_generator(0, "downlink", 2)
    codec = s.downlink_codec
    if getattr(codec, "stateful", False):
        expected, nbytes, _ = codec.roundtrip(v.view(1, -1), q, gen)
    elif getattr(codec, "stochastic", False):
        expected, nbytes = codec.roundtrip(v.view(1, -1), codec.draw(1, v.numel(), gen))
    else:
        expected, nbytes = codec.roundtrip(v.view(1, -1))
    torch.testing.assert_close(s.params - before, expected[0])
    assert stage.message_bytes[-1] == int(nbytes[0]) < 4 * v.numel()
    assert torch.isfinite(s.params).all() and row["downlink_compression"] > 0
    again = sim(f"downlink={option}", *DOWNLINKS[option], "model=mlp", "model.hidden=[16]")
    again.step(), again.step()
    assert torch.equal(again.params, s.params)


@pytest.mark.parametrize("alg", ["fedavg", "fedprox", "scaffold", "feddyn", "fednova"])
def test_a_delta_downlink_composes_with_every_algorithm(alg):
    s = sim(f"algorithm={alg}", "downlink=stc", "downlink.k=50", "uplink=topk", "uplink.k=50")
    rows = [s.step() for _ in range(3)]
    assert torch.isfinite(s.params).all()
    assert all(r["downlink_bytes"] > 0 for r in rows)
    if alg == "scaffold":  # the control variate goes as fp32 next to the compressed model delta
        assert s.last_record.bytes["downlink/c"] == 3 * 4 * D


def test_stc_downlink_bytes_are_golomb_messages():
    s = sim("downlink=stc", "downlink.k=25", "clients_per_round=6")
    s.step()
    row = s.step()  # everyone took part in round 1: each downloads exactly m_1
    assert row["downlink_bytes"] == 6 * s.downlink_stage.message_bytes[0]
    assert s.downlink_stage.message_bytes[0] < 8 + 25 * 2  # Golomb positions and signs, no fp32 values
    assert isinstance(s.downlink_codec, STC)


def test_downlink_config_errors():
    from fedbench.config import ConfigError, compose, validate

    cfg = dict(compose(*PIPE))
    cfg["downlink"] = {"name": "sign_majority", "scale": 0.001}  # a vote needs many senders
    with pytest.raises(
        ConfigError, match="downlink.name='sign_majority': unknown downlink; allowed: none, fp16, bf16, topk"
    ):
        validate(cfg)
    with pytest.raises(ConfigError, match=r"downlink.cache_rounds=0: .*null or an integer >= 1"):
        validate(compose(*PIPE, "downlink=topk", "downlink.cache_rounds=0"))
    cfg = dict(compose(*PIPE, "downlink=fp16"))
    cfg["downlink"] = {"name": "fp16", "error_feedback": "ef"}  # a cast sends the model: nothing to feed back
    with pytest.raises(
        ConfigError, match="downlink.error_feedback='ef': unknown key for downlink 'fp16'; allowed keys: name"
    ):
        validate(cfg)


def test_the_stage_state_survives_a_weights_only_checkpoint(tmp_path):
    """Residual, PowerSGD-free state, sync rounds and message lengths go through torch.save and a
    weights_only load, and the restored stage continues exactly as the original."""
    a = DownlinkStage(TopK(k=2), "ef", 3, 0, num_clients=4, dim=5)
    a.compress(torch.tensor([3.0, -1.0, 0.5, -4.0, 0.0]), 1)
    a.send(RoundRecord(round=2, clients=np.array([1, 3]), num_samples=np.array([1, 1])))
    torch.save(a.state_dict(), tmp_path / "s.pt")
    b = DownlinkStage(TopK(k=2), "ef", 3, 0, num_clients=4, dim=5)
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True), torch.device("cpu"))
    assert b.synced.tolist() == [0, 2, 0, 2] and b.synced.dtype == np.int64
    assert b.message_bytes == a.message_bytes and torch.equal(b.residual, a.residual) and b.q is None
    step = torch.tensor([0.0, -1.5, 1.0, 0.0, 0.2])
    assert torch.equal(a.compress(step, 2)[0], b.compress(step, 2)[0])
    assert a.download_bytes(np.arange(4), 3).tolist() == b.download_bytes(np.arange(4), 3).tolist()
    none = DownlinkStage(TopK(k=2), "none", None, 0, num_clients=2, dim=5)
    assert set(none.state_dict()) == {"synced", "message_bytes"}  # no residual without feedback
    none.load_state_dict(none.state_dict(), torch.device("cpu"))
    assert none.residual is None and none.q is None


def test_cache_rounds_from_the_constructor_and_first_contact():
    """``cache_rounds`` given at construction; a client that never took part gets the full model
    even when the cache would cover every message so far; one last seen in round 1 is cached."""
    stage = DownlinkStage(TopK(k=1), "none", 2, 0, num_clients=3, dim=100)  # full model: 400 bytes
    stage.message_bytes = [10, 20, 30]
    stage.synced[:] = [0, 1, 2]  # round 4: client 1 missed m_1..m_3 (3 > 2), client 2 m_2, m_3
    assert stage.download_bytes(np.arange(3), 4).tolist() == [400, 400, 50]
    # round 2: client 1 lacks m_1; client 2 is up to date
    assert stage.download_bytes(np.arange(3), 2).tolist() == [400, 10, 0]


def test_relative_error_of_small_and_zero_steps():
    stage = DownlinkStage(TopK(k=1), "none", None, 0, num_clients=1, dim=3)
    _, met = stage.compress(torch.tensor([0.3, -0.4, 0.0]), 1)  # norm 0.5: drops 0.3
    assert met["downlink_rel_error"] == pytest.approx(0.3 / 0.5)
    sent, met = stage.compress(torch.zeros(3), 2)  # nothing to send: no error, not a division by 0
    assert met["downlink_rel_error"] == 0.0 and not sent.any()


def test_powersgd_downlink_keeps_the_servers_q_through_a_checkpoint(tmp_path):
    from fedbench.compress import PowerSGD

    def stage():
        return DownlinkStage(PowerSGD([(6, 5), (5,)], rank=1), "ef", None, 0, num_clients=2, dim=35)

    a = stage()
    g = torch.Generator().manual_seed(0)
    a.compress(torch.randn(35, generator=g), 1)
    assert a.q is not None and a.q.shape == (1, 5)  # the warm start of the next message
    torch.save(a.state_dict(), tmp_path / "s.pt")
    b = stage()
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True), torch.device("cpu"))
    assert torch.equal(b.q, a.q)
    step = torch.randn(35, generator=g)
    assert torch.equal(a.compress(step, 2)[0], b.compress(step, 2)[0]) and torch.equal(a.q, b.q)
