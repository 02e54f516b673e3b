"""FedAvg math: aggregation, server optimizer, one-client equivalence with plain SGD, RNG streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fl_reference import reference_batches
from test_engine import tiny_config

from fedbench.aggregator import weighted_mean
from fedbench.config import validate
from fedbench.models import build_model
from fedbench.server_opt import server_sgd
from fedbench.simulation import Simulation


def test_weighted_mean_hand_computed():
    u = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, -4.0]])
    w = torch.tensor([1.0, 2.0, 1.0])
    # (1*[1,0] + 2*[3,2] + 1*[0,-4]) / 4 = [7, 0] / 4
    torch.testing.assert_close(weighted_mean(u, w), torch.tensor([1.75, 0.0]))
    with pytest.raises(ValueError, match="weights"):
        weighted_mean(u, torch.ones(2))


def test_server_sgd_and_momentum_hand_computed():
    opt = server_sgd(lr=0.5)
    step, state, _ = opt.update(torch.tensor([2.0, -2.0]), opt.init(torch.zeros(2)))
    torch.testing.assert_close(step, torch.tensor([1.0, -1.0]))
    m = server_sgd(lr=0.5, momentum=0.9)
    state = m.init(torch.zeros(1))
    s1, state, _ = m.update(torch.tensor([1.0]), state)  # v = 1, step 0.5
    s2, state, _ = m.update(torch.tensor([1.0]), state)  # v = 0.9 + 1 = 1.9, step 0.95
    s3, state, _ = m.update(torch.tensor([-2.0]), state)  # v = 1.71 - 2 = -0.29, step -0.145
    assert s1.item() == pytest.approx(0.5) and s2.item() == pytest.approx(0.95) and s3.item() == pytest.approx(-0.145)


@pytest.mark.parametrize("engine", ["vmap", "sequential"])
def test_one_client_full_participation_equals_plain_sgd(engine):
    cfg = tiny_config(
        **{
            "partition": {"name": "iid"},
            "model": {"name": "mlp", "hidden": [32]},
            "num_clients": 1,
            "clients_per_round": 1,
            "algorithm.momentum": 0.0,
            "algorithm.weight_decay": 0.0,
            "algorithm.batch_size": 50,
            "engine.name": engine,
        }
    )
    run = validate(cfg)
    sim = Simulation(run)
    rounds = 3
    for _ in range(rounds):
        sim.step()

    # The same batches in the same order on one model with torch.optim.SGD.
    model = build_model({"name": "mlp", "hidden": [32]}, (1, 8, 8), 10, seed=run.seed)
    opt = torch.optim.SGD(model.parameters(), lr=run.algorithm.lr)
    x, y = sim.data.x_train, sim.data.y_train
    for r in range(1, rounds + 1):
        for idx in reference_batches(sim.parts[0], 50, 1, None, run.seed, r, 0):
            idx = torch.as_tensor(idx)
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    plain = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert len(sim.parts[0]) == len(y), "the single client holds all the data"
    torch.testing.assert_close(sim.params, plain, rtol=1e-5, atol=1e-6)


def test_round_aggregates_local_models_weighted_by_sample_count():
    cfg = tiny_config(**{"server_opt.lr": 1.0})
    sim = Simulation(validate(cfg))
    before = sim.params.clone()
    captured = {}
    train = sim.engine.train

    def spy(global_params, schedules, const=None):
        local, losses = train(global_params, schedules, const)
        captured["local"] = local.clone()
        return local, losses

    sim.engine.train = spy
    metrics = sim.step()
    selected = sim.select(1)[0].clients
    n = torch.as_tensor(sim.sizes[selected], dtype=torch.float32)
    expected = (n[:, None] * captured["local"]).sum(0) / n.sum()
    torch.testing.assert_close(sim.params, expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(before, sim.params)
    assert metrics["uplink_bytes"] == len(selected) * sim.layout.dim * 4 == metrics["downlink_bytes"]


def test_server_lr_scales_the_averaged_update():
    base = Simulation(validate(tiny_config()))
    half = Simulation(validate(tiny_config(**{"server_opt.lr": 0.5})))
    w0 = base.params.clone()
    base.step()
    half.step()
    torch.testing.assert_close(half.params - w0, 0.5 * (base.params - w0), rtol=1e-4, atol=1e-6)


def test_named_streams_are_independent():
    a = Simulation(validate(tiny_config()))
    b = Simulation(validate(tiny_config(**{"partition.alpha": 5.0, "algorithm.local_epochs": 3})))
    # Another partition and local schedule, but the same initial model and the same client sampling.
    assert torch.equal(a.params, b.params)
    assert all(np.array_equal(a.select(r)[0].clients, b.select(r)[0].clients) for r in range(1, 6))
    assert not all(np.array_equal(p, q) for p, q in zip(a.parts, b.parts))
    c = Simulation(validate(tiny_config(seed=1)))
    assert not torch.equal(a.params, c.params)
    assert not all(np.array_equal(a.select(r)[0].clients, c.select(r)[0].clients) for r in range(1, 6))


def test_client_sampling_is_uniform_without_replacement():
    sim = Simulation(validate(tiny_config()))
    counts = np.zeros(sim.run.num_clients)
    for r in range(1, 601):
        chosen = sim.select(r)[0].clients
        assert len(set(chosen.tolist())) == sim.run.clients_per_round
        counts[chosen] += 1
    expected = 600 * sim.run.clients_per_round / sim.run.num_clients  # 300 per client
    assert np.abs(counts - expected).max() < 60  # > 5 binomial standard deviations (~12)


@pytest.mark.parametrize("engine", ["vmap", "sequential"])
def test_rounds_match_an_independent_fedavg_reference(engine):
    """Two rounds against a textbook FedAvg written with deepcopy and torch.optim.SGD
    (momentum, weight decay, unequal client sizes, server learning rate)."""
    import copy

    cfg = tiny_config(**{"engine.name": engine, "server_opt.lr": 0.7, "model": {"name": "mlp", "hidden": [24]}})
    run = validate(cfg)
    sim = Simulation(run)
    global_model = build_model({"name": "mlp", "hidden": [24]}, (1, 8, 8), 10, seed=run.seed)
    alg = run.algorithm
    x, y = sim.data.x_train, sim.data.y_train
    for r in (1, 2):
        sim.step()
        chosen = sim.select(r)[0].clients
        local_states, weights = [], []
        for c in chosen:
            local = copy.deepcopy(global_model)
            opt = torch.optim.SGD(local.parameters(), lr=alg.lr, momentum=alg.momentum, weight_decay=alg.weight_decay)
            for idx in reference_batches(sim.parts[c], alg.batch_size, alg.local_epochs, None, run.seed, r, int(c)):
                idx = torch.as_tensor(idx)
                opt.zero_grad()
                F.cross_entropy(local(x[idx]), y[idx]).backward()
                opt.step()
            local_states.append([p.detach() for p in local.parameters()])
            weights.append(len(sim.parts[c]))
        w = torch.tensor(weights, dtype=torch.float32) / sum(weights)
        with torch.no_grad():
            for i, p in enumerate(global_model.parameters()):
                avg = sum(wk * st[i] for wk, st in zip(w, local_states))
                p += run.server_opt.lr * (avg - p)
    reference = torch.cat([p.detach().reshape(-1) for p in global_model.parameters()])
    assert len(set(sim.sizes[sim.select(1)[0].clients].tolist())) > 1, "unequal client sizes"
    torch.testing.assert_close(sim.params, reference, rtol=1e-4, atol=1e-5)


def test_client_transforms_run_in_the_uplink_stage_with_their_state():
    """A transform sees the round record, changes the updates, keeps state and reports metrics."""
    from fedbench.simulation import ClientTransform

    seen = []

    def update(record, state):
        seen.append(record.clients.copy())
        record.updates = record.updates * 0.5
        return state + 1, {"halved": float(state + 1)}

    cfg = validate(tiny_config())
    plain = Simulation(cfg)
    halved = Simulation(cfg, transforms=[ClientTransform(lambda d: 0, update)])
    w0 = plain.params.clone()
    plain.step()
    row = halved.step()
    assert row["halved"] == 1.0 and halved.transform_states == [1]
    np.testing.assert_array_equal(seen[0], halved.last_record.clients)
    torch.testing.assert_close(halved.params - w0, 0.5 * (plain.params - w0), rtol=1e-5, atol=1e-7)
    assert row["uplink_bytes"] == halved.last_record.n * halved.layout.dim * 4


@pytest.mark.parametrize("alg", ["fedavg", "scaffold", "feddyn", "fednova"])
def test_a_round_whose_clients_are_all_empty_leaves_the_model_alone(alg):
    """More clients than samples: an iid split leaves some clients empty, and a round that selects
    only empty ones has nothing to learn from (its updates are zero, and so is the step)."""
    cfg = tiny_config(**{"partition": {"name": "iid"}, "num_clients": 1500, "clients_per_round": 1})
    cfg["algorithm"] = {**cfg["algorithm"], "name": alg}
    sim = Simulation(validate(cfg))
    empty_round = next(r for r in range(1, 200) if sim.sizes[sim.select(r)[0].clients].sum() == 0)
    for _ in range(empty_round - 1):
        sim.step()
    before = sim.params.clone()
    row = sim.step()
    # nobody trained: no training loss (NaN), which is not divergence
    assert sim.last_record.steps.tolist() == [0] and row["train_loss"] != row["train_loss"]
    if alg == "feddyn":  # Algorithm 1: theta = mean(theta_k) - h / alpha, and h still pulls the model
        assert empty_round > 1 and sim.algorithm.state["h"].abs().sum() > 0
        torch.testing.assert_close(sim.params - before, -sim.algorithm.state["h"] / sim.run.algorithm.alpha)
    else:
        assert torch.equal(sim.params, before)


def test_client_accuracy_credits_each_training_sample_to_its_owner():
    """The fairness columns from the simulation's owner map, against each client's own samples
    (``sim.parts``) scored directly with the global model."""
    from torch.func import functional_call

    sim = Simulation(validate(tiny_config(client_metrics=True)))
    sim.step()
    row = sim.evaluate()
    with torch.no_grad():
        pred = functional_call(sim.model, sim.layout.unflatten(sim.params), (sim.data.x_train,)).argmax(-1)
    y = sim.data.y_train
    expected = np.array([float((pred[idx] == y[idx]).double().mean()) for idx in sim.parts])
    assert np.unique(np.round(expected, 3)).size > 3, "clients must differ for the check to mean anything"
    np.testing.assert_allclose(sim.client_acc, expected, rtol=0, atol=1e-12)
    assert row["client_acc_min"] == pytest.approx(expected.min())
    assert row["client_acc_mean"] == pytest.approx(expected.mean())
    assert row["client_acc_std"] == pytest.approx(expected.std())


def test_a_transform_that_encodes_the_update_counts_its_own_bytes():
    """Bytes come from the stage that knows them: a (pretend) fp16 encoder counts 2 bytes a value
    and the uplink stage does not add fp32 bytes on top."""
    from fedbench.simulation import ClientTransform

    def fp16(record, state):
        record.updates = record.updates.half().float()
        record.add_bytes("uplink", "update", record.updates.numel() * 2)
        return state, {}

    sim = Simulation(validate(tiny_config()), transforms=[ClientTransform(lambda d: None, fp16)])
    row = sim.step()
    n, d = sim.last_record.n, sim.layout.dim
    assert sim.last_record.bytes == {"downlink/model": n * d * 4, "uplink/update": n * d * 2}
    assert row["uplink_bytes"] == n * d * 2 and row["uplink_bytes_cum"] == n * d * 2
