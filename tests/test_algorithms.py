"""Algorithms (FedProx, SCAFFOLD, FedDyn, FedNova) and server optimizers (FedAvgM, FedAdam,
FedYogi, FedAdagrad): identities, hand-computed steps, an independent reference on every engine,
engine agreement, fused traced updates, and the per-client state store."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fl_reference import reference_run
from test_engine import run_rounds, tiny_config

from fedbench.algorithm import FedDyn, FedDynConfig, Scaffold, ScaffoldConfig, a_norm
from fedbench.config import validate
from fedbench.engine import LocalRule
from fedbench.models import build_model
from fedbench.round import RoundRecord
from fedbench.server_opt import server_adaptive
from fedbench.simulation import Simulation
from fedbench.state import ClientState

ALGORITHMS = {
    "fedavg": {"name": "fedavg"},
    "fedprox": {"name": "fedprox", "mu": 0.1},
    "scaffold": {"name": "scaffold"},
    "feddyn": {"name": "feddyn", "alpha": 0.1},
    "fednova": {"name": "fednova"},
}
MLP = {"name": "mlp", "hidden": [24]}
aten = torch.ops.aten


def alg_config(alg: str, **over):
    base = tiny_config(**{"model": MLP, **over})
    base["algorithm"] = {**base["algorithm"], **ALGORITHMS[alg]}
    return base


# ---- identities ----------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["vmap", "sequential"])
def test_fedprox_with_mu_zero_is_fedavg_bit_for_bit(engine):
    avg = run_rounds(alg_config("fedavg", **{"engine.name": engine}), 2)
    cfg = alg_config("fedprox", **{"engine.name": engine})
    cfg["algorithm"]["mu"] = 0.0
    prox = run_rounds(cfg, 2)
    assert torch.equal(avg.params, prox.params)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_fednova_with_equal_local_steps_is_fedavg(momentum):
    over = {"algorithm.local_steps": 6, "algorithm.momentum": momentum}
    avg = run_rounds(alg_config("fedavg", **over), 2)
    nova = run_rounds(alg_config("fednova", **over), 2)
    assert not torch.equal(avg.params, Simulation(validate(alg_config("fedavg", **over))).params)
    torch.testing.assert_close(nova.params, avg.params, rtol=1e-5, atol=1e-6)


def test_fednova_differs_from_fedavg_with_unequal_steps():
    avg = run_rounds(alg_config("fedavg"), 1)
    nova = run_rounds(alg_config("fednova"), 1)
    assert len(set(nova.last_record.steps.tolist())) > 1
    assert (nova.params - avg.params).norm() > 1e-3 * (avg.params - nova.params).norm().clamp_min(1e-12)
    assert not torch.allclose(nova.params, avg.params, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("engine", ["vmap", "sequential"])
def test_scaffold_with_zero_controls_is_fedavg_for_the_first_round(engine):
    avg = run_rounds(alg_config("fedavg", **{"engine.name": engine}), 1)
    sc = run_rounds(alg_config("scaffold", **{"engine.name": engine}), 1)
    assert torch.equal(avg.params, sc.params)
    assert sc.algorithm.state["c"].abs().sum() > 0, "round 1 must have updated the server control"
    sc.step(), avg.step()
    assert not torch.allclose(avg.params, sc.params), "from round 2 the controls correct the steps"


def test_server_sgd_without_momentum_is_fedavg_and_lr_scales_it():
    avg = run_rounds(alg_config("fedavg"), 1)
    cfg = alg_config("fedavg")
    cfg["server_opt"] = {"name": "sgd", "lr": 0.5, "momentum": 0.0}
    half = run_rounds(cfg, 1)
    w0 = Simulation(validate(cfg)).params
    torch.testing.assert_close(half.params - w0, 0.5 * (avg.params - w0), rtol=1e-5, atol=1e-7)


# ---- hand-computed -------------------------------------------------------------------------------
def test_one_fedprox_step_hand_computed():
    # w = [1, 2], w0 = [0, 4], g = [0.5, -1], mu = 0.1, lr = 0.5, weight decay 0.2:
    # d = g + mu (w - w0) + wd w = [0.5 + 0.1 + 0.2, -1 - 0.2 + 0.4] = [0.8, -0.8]; w - lr d = [0.6, 2.4]
    mu, wd, lr = 0.1, 0.2, 0.5
    w0 = torch.tensor([0.0, 4.0])
    rule = LocalRule(lr=lr, coef=mu + wd, constant=True)
    w = torch.tensor([1.0, 2.0])
    assert rule.pulls  # one lerp towards the anchor w0 * mu / (mu + wd)
    rule.step_([w], [torch.tensor([0.5, -1.0])], rule.init([w]), [rule.prepare(-mu * w0)])
    torch.testing.assert_close(w, torch.tensor([0.6, 2.4]))
    # with momentum 0.5, a second step with g = [0, 0]: d = mu (w - w0) + wd w = [0.06+0.12, -0.16+0.48]
    # = [0.18, 0.32]; b = 0.5 [0.8, -0.8] + d = [0.58, -0.08]; w = [0.6 - 0.29, 2.4 + 0.04]
    rule = LocalRule(lr=lr, momentum=0.5, coef=mu + wd, constant=True)
    w = torch.tensor([1.0, 2.0])
    state = rule.init([w])
    assert not rule.pulls and torch.equal(rule.prepare(-mu * w0), -mu * w0)
    rule.step_([w], [torch.tensor([0.5, -1.0])], state, [-mu * w0])
    rule.step_([w], [torch.zeros(2)], state, [-mu * w0])
    torch.testing.assert_close(w, torch.tensor([0.31, 2.44]))


def test_local_rule_with_per_client_step_sizes_freezes_finished_clients():
    rule = LocalRule(lr=0.5, coef=0.2, constant=True)
    w = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    g, k = torch.tensor([[0.5, -1.0], [0.5, -1.0]]), torch.tensor([[0.1, 0.0], [0.1, 0.0]])
    rule.step_([w], [g], None, [rule.prepare(k)], [torch.tensor([[-0.5], [0.0]])])
    # client 0: d = g + 0.2 w + k = [0.8, -0.6]; w - 0.5 d = [0.6, 2.3]; client 1 frozen
    torch.testing.assert_close(w, torch.tensor([[0.6, 2.3], [1.0, 2.0]]))


def _fake_sim(num_clients: int, dim: int):
    return SimpleNamespace(
        client_state=ClientState(),
        layout=SimpleNamespace(dim=dim),
        device=torch.device("cpu"),
        run=SimpleNamespace(num_clients=num_clients),
    )


def test_scaffold_control_update_hand_computed():
    # Option II: c_i+ = c_i - c + (x - y_i) / (K lr); server c += (1/N) sum_S (c_i+ - c_i).
    sim = _fake_sim(num_clients=4, dim=2)
    alg = Scaffold(ScaffoldConfig(lr=0.5))
    alg.init(sim)
    alg.state["c"] = torch.tensor([1.0, -1.0])
    sim.client_state.set("c_i", np.array([2]), torch.tensor([[0.5, 0.5]]))
    record = RoundRecord(round=1, clients=np.array([0, 2]), num_samples=np.array([10, 20]), steps=np.array([2, 4]))
    record.updates = torch.tensor([[-1.0, 2.0], [4.0, 0.0]])  # y_i - x
    torch.testing.assert_close(
        alg.local_constant(sim, record, torch.zeros(2)), torch.tensor([[1.0, -1.0], [0.5, -1.5]])
    )
    alg.after_local(sim, record, torch.zeros(2))
    # client 0: c_0 = 0, K lr = 1: c_0+ = 0 - [1, -1] + [1, -2] = [0, -1]
    # client 2: c_2 = [.5, .5], K lr = 2: c_2+ = [.5, .5] - [1, -1] + [-2, 0] = [-2.5, 1.5]
    got = sim.client_state.get("c_i", np.array([0, 1, 2]), 2, "cpu")
    torch.testing.assert_close(got, torch.tensor([[0.0, -1.0], [0.0, 0.0], [-2.5, 1.5]]))
    torch.testing.assert_close(record.payloads["delta_c"], torch.tensor([[0.0, -1.0], [-3.0, 1.0]]))
    agg, _ = alg.server_step(sim, record, torch.zeros(2))
    # c = [1, -1] + ([0, -1] + [-3, 1]) / 4 = [0.25, -1]
    torch.testing.assert_close(alg.state["c"], torch.tensor([0.25, -1.0]))


def test_feddyn_server_state_hand_computed():
    # h = h - alpha/m sum_P delta_k; step = mean_P(delta_k) - h / alpha (unweighted mean)
    sim = _fake_sim(num_clients=5, dim=2)
    alg = FedDyn(FedDynConfig(alpha=0.5))
    alg.init(sim)
    record = RoundRecord(round=1, clients=np.array([1, 3]), num_samples=np.array([1, 100]), steps=np.array([1, 1]))
    record.updates = torch.tensor([[1.0, 2.0], [3.0, -2.0]])
    alg.after_local(sim, record, torch.zeros(2))
    assert torch.equal(record.weights, torch.ones(2)), "FedDyn averages participants without sample weights"
    # g_k = 0 - 0.5 delta_k
    torch.testing.assert_close(sim.client_state.get("grad", np.array([1, 3]), 2, "cpu"), -0.5 * record.updates)
    mean = torch.tensor([2.0, 0.0])  # what the aggregator hands over with equal weights
    step, _ = alg.server_step(sim, record, mean)
    # h = -0.5/5 [4, 0] = [-0.4, 0]; step = [2, 0] + [0.8, 0] = [2.8, 0]
    torch.testing.assert_close(alg.state["h"], torch.tensor([-0.4, 0.0]))
    torch.testing.assert_close(step, torch.tensor([2.8, 0.0]))
    step, _ = alg.server_step(sim, record, mean)  # h accumulates: [-0.8, 0]; step = [2 + 1.6, 0]
    torch.testing.assert_close(step, torch.tensor([3.6, 0.0]))
    # the local constant is -g_k - alpha w0
    torch.testing.assert_close(
        alg.local_constant(sim, record, torch.tensor([1.0, 1.0])),
        torch.tensor([[0.5 - 0.5, 1.0 - 0.5], [1.5 - 0.5, -1.0 - 0.5]]),
    )


def test_fednova_a_norm_hand_computed_and_equals_momentum_displacement():
    # rho = 0.5, tau = 3: a = [1 - rho^3, 1 - rho^2, 1 - rho] / (1 - rho) = [1.75, 1.5, 1]; sum 4.25
    assert a_norm(torch.tensor([3]), 0.5).item() == pytest.approx(4.25)
    assert a_norm(torch.tensor([7]), 0.0).item() == 7
    # a constant gradient g moves momentum SGD by lr * g * ||a||_1 after tau steps
    for rho, tau in ((0.9, 5), (0.3, 11)):
        rule = LocalRule(lr=0.1, momentum=rho)
        w = torch.zeros(1)
        state = rule.init([w])
        for _ in range(tau):
            rule.step_([w], [torch.ones(1)], state)
        assert -w.item() / 0.1 == pytest.approx(a_norm(torch.tensor([tau]), rho).item(), rel=1e-5)


@pytest.mark.parametrize("kind", ["adam", "yogi", "adagrad"])
def test_adaptive_server_first_and_second_steps_hand_computed(kind):
    # beta1 = 0.9, beta2 = 0.99, tau = 0.1, lr = 0.01, v_-1 = tau^2 = 0.01, Delta_0 = [0.2, -0.4]
    opt = server_adaptive(kind, lr=0.01, beta1=0.9, beta2=0.99, tau=0.1)
    state = opt.init(torch.zeros(2))
    step, state, _ = opt.update(torch.tensor([0.2, -0.4]), state)
    m0 = torch.tensor([0.02, -0.04])
    sq = torch.tensor([0.04, 0.16])
    v0 = {
        "adam": 0.99 * 0.01 + 0.01 * sq,  # [0.0103, 0.0115]
        "yogi": 0.01 - 0.01 * sq * torch.sign(0.01 - sq),  # sign negative: [0.0104, 0.0116]
        "adagrad": 0.01 + sq,  # [0.05, 0.17]
    }[kind]
    torch.testing.assert_close(state["m"], m0)
    torch.testing.assert_close(state["v"], v0)
    torch.testing.assert_close(step, 0.01 * m0 / (v0.sqrt() + 0.1))
    if kind == "adam":  # FedAdam's numbers written out: 0.01 * 0.02 / (sqrt(0.0103) + 0.1)
        assert step[0].item() == pytest.approx(0.0002 / (0.0103**0.5 + 0.1), rel=1e-6)
    # second step with Delta_1 = 0: m = 0.9 m0; v per rule with sq = 0
    step, state, _ = opt.update(torch.zeros(2), state)
    v1 = {"adam": 0.99 * v0, "yogi": v0, "adagrad": v0}[kind]
    torch.testing.assert_close(step, 0.01 * 0.9 * m0 / (v1.sqrt() + 0.1))


def test_yogi_moves_v_towards_delta_squared_from_above():
    opt = server_adaptive("yogi", lr=1.0, beta1=0.0, beta2=0.5, tau=1.0)  # v_-1 = 1
    _, state, _ = opt.update(torch.tensor([0.5]), opt.init(torch.zeros(1)))
    # v > Delta^2: v = 1 - 0.5 * 0.25 * sign(0.75) = 0.875
    assert state["v"].item() == pytest.approx(0.875)


# ---- the independent reference on every engine ---------------------------------------------------
@pytest.mark.parametrize("engine", ["vmap", "sequential"])
@pytest.mark.parametrize("alg", list(ALGORITHMS))
def test_two_rounds_match_an_independent_reference(alg, engine):
    """deepcopy + torch.optim.SGD with the extra terms written from the papers (momentum, weight
    decay, unequal client sizes, server lr and momentum), drawing its own batches."""
    cfg = alg_config(alg, **{"engine.name": engine})
    cfg["server_opt"] = {"name": "sgd", "lr": 0.8, "momentum": 0.5}
    run = validate(cfg)
    sim = run_rounds(cfg, 2)
    model = build_model(MLP, (1, 8, 8), 10, seed=run.seed)
    ref = reference_run(run, model, sim.data.x_train, sim.data.y_train, sim.parts, rounds=2)
    assert len(set(sim.last_record.steps.tolist())) > 1, "unequal client step counts"
    torch.testing.assert_close(sim.params, ref, rtol=1e-4, atol=2e-5)


# ---- engines agree, traced updates fuse ----------------------------------------------------------
def _engines(cfg):
    out = {}
    for name, eng in {
        "sequential": {"name": "sequential"},
        "vmap_traced": {"name": "vmap", "trace_after": 0},
        "vmap_eager": {"name": "vmap", "trace": False},
    }.items():
        c = {**cfg, "engine": {**cfg["engine"], **eng}}
        out[name] = Simulation(validate(c))
    return out


@pytest.mark.parametrize("alg", list(ALGORITHMS))
def test_engines_agree_per_client_for_every_algorithm(alg):
    """Per-client local models from the same start and the same per-client state, round 2 (so
    SCAFFOLD's and FedDyn's constants are non-zero), on every engine."""
    sims = _engines(alg_config(alg))
    for sim in sims.values():
        sim.step()
    locals_ = {}
    for name, sim in sims.items():
        record, _ = sim.select(2)
        w0, _ = sim.broadcast(record)
        sim.local_train(record, w0)
        locals_[name] = record.updates
    ref = locals_["sequential"]
    assert ref.abs().sum() > 0
    for name in ("vmap_traced", "vmap_eager"):
        # One round from a shared start on a smooth model: only float rounding separates them.
        torch.testing.assert_close(locals_[name], ref, rtol=1e-4, atol=1e-6, msg=f"{name} vs sequential")


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("alg", list(ALGORITHMS))
def test_traced_steps_fuse_every_linear_update_for_every_algorithm(alg, momentum):
    """Each of the MLP's three Linear weight updates becomes one baddbmm_ in every traced graph,
    whatever terms the algorithm adds (a term read with the gradient would silently stop it)."""
    cfg = alg_config(alg, **{"algorithm.momentum": momentum, "engine.max_pad_fraction": 0.9})
    cfg["model"] = {"name": "mlp", "hidden": [32, 16]}
    sim = run_rounds(cfg, 2)
    graphs = list(sim.engine._train_step.graphs.values())
    assert graphs
    for g in graphs:
        fused = [n for n in g.graph.nodes if n.op == "call_function" and n.target == aten.baddbmm_.default]
        assert len(fused) == 3, f"{len(fused)} of 3 Linear updates fused"


# ---- per-client state store ----------------------------------------------------------------------
def test_client_state_grows_with_participants_not_registered_clients():
    store = ClientState()
    d = 1000
    store.set("c_i", np.array([5, 99_999]), torch.ones(2, d))
    store.set("c_i", np.array([12, 5]), torch.full((2, d), 2.0))
    assert store.clients("c_i") == [5, 12, 99_999]
    assert store.nbytes() == 3 * d * 4
    assert store._data["c_i"].shape[0] <= 8, "capacity follows participants (100,000 ids registered)"
    got = store.get("c_i", np.array([99_999, 7, 5]), d, "cpu")
    assert torch.equal(got[0], torch.ones(d)) and torch.equal(got[1], torch.zeros(d))
    assert torch.equal(got[2], torch.full((d,), 2.0))
    again = ClientState()
    again.load_state_dict(store.state_dict())
    assert torch.equal(
        again.get("c_i", np.array([5, 12, 99_999]), d, "cpu"), store.get("c_i", np.array([5, 12, 99_999]), d, "cpu")
    )


def test_a_client_that_sits_out_keeps_its_state():
    sim = Simulation(validate(alg_config("scaffold", num_clients=12, clients_per_round=3)))
    seen: set[int] = set()
    snapshots = {}
    for _ in range(4):
        before = {c: sim.client_state.get("c_i", np.array([c]), sim.layout.dim, "cpu") for c in seen}
        sim.step()
        chosen = set(sim.last_record.clients.tolist())
        for c in seen - chosen:
            assert torch.equal(sim.client_state.get("c_i", np.array([c]), sim.layout.dim, "cpu"), before[c])
            snapshots[c] = True
        seen |= chosen
        assert sim.client_state.clients("c_i") == sorted(seen)
    assert snapshots, "some client must have sat out after participating"
    assert len(seen) < 12 or sim.client_state.nbytes() == len(seen) * sim.layout.dim * 4


def test_scaffold_doubles_the_uplink_and_downlink():
    avg = run_rounds(alg_config("fedavg"), 1)
    sc = run_rounds(alg_config("scaffold"), 1)
    n, d = sc.last_record.n, sc.layout.dim
    assert sc.last_record.bytes == {
        "downlink/model": n * d * 4,
        "downlink/c": n * d * 4,
        "uplink/update": n * d * 4,
        "uplink/delta_c": n * d * 4,
    }
    assert avg.last_record.bytes == {"downlink/model": n * d * 4, "uplink/update": n * d * 4}


# ---- every algorithm x server optimizer x partition x engine runs --------------------------------
@pytest.mark.parametrize("engine", ["vmap", "sequential"])
@pytest.mark.parametrize("partition", ["iid", "dirichlet_class", "dirichlet_client"])
@pytest.mark.parametrize("alg", list(ALGORITHMS))
def test_every_algorithm_runs_with_every_partition_and_engine(alg, partition, engine):
    cfg = alg_config(alg, **{"engine.name": engine, "model": {"name": "logreg"}})
    cfg["partition"] = {"name": partition}
    cfg["server_opt"] = {"name": ["sgd", "adam", "yogi", "adagrad"][hash(alg + partition) % 4]}
    sim = Simulation(validate(cfg))
    row = sim.step()
    assert np.isfinite(row["train_loss"]) and not torch.equal(sim.params, Simulation(validate(cfg)).params)


# ---- checkpoint: a restored simulation continues exactly ------------------------------------------
@pytest.mark.parametrize(
    ("alg", "server", "engine"),
    [
        ("scaffold", {"name": "adam", "lr": 0.01}, {"name": "vmap", "trace_after": 24}),
        ("feddyn", {"name": "sgd", "momentum": 0.5}, {"name": "vmap", "trace_after": 24}),
        ("fednova", {"name": "yogi"}, {"name": "sequential"}),
    ],
)
def test_state_dict_round_trip_continues_bit_for_bit(tmp_path, alg, server, engine):
    """4 rounds straight equal 2 rounds, a save/load through torch.save and
    torch.load(weights_only=True) into a fresh Simulation, and 2 more rounds: every piece of state
    (server optimizer, algorithm, per-client store, the traced step's call counts) comes back.
    trace_after=24 makes the vmap step trace during round 3 (20 calls in 2 rounds), after the
    restore: only if the restore brings back the step's call count."""
    cfg = alg_config(alg, **{"engine": engine, "num_clients": 12, "clients_per_round": 4})
    cfg["server_opt"] = server
    straight = Simulation(validate(cfg))
    rows = [straight.step() for _ in range(4)]
    first = Simulation(validate(cfg))
    resumed_rows = [first.step() for _ in range(2)]
    if engine["name"] == "vmap":
        assert not first.engine._train_step.graphs, "nothing traced before the checkpoint"
    torch.save(first.state_dict(), tmp_path / "ckpt.pt")
    second = Simulation(validate(cfg))
    second.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    resumed_rows += [second.step() for _ in range(2)]
    assert torch.equal(second.params, straight.params)
    if engine["name"] == "vmap":  # traced and untraced steps differ by rounding: trace at the same call
        assert second.engine._train_step.graphs, "the step must trace after the restore"
        assert second.engine.state_dict() == straight.engine.state_dict()
    for a, b in zip(rows, resumed_rows):
        for key in a:
            if not key.endswith("time_s"):
                assert a[key] == b[key] or (a[key] != a[key] and b[key] != b[key]), key
