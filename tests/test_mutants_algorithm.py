"""Tests that kill surviving mutants of fedbench's algorithm modules (see docs/testing.md)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from fedbench.algorithm import Algorithm, FedNova, FedNovaConfig, FedProx, FedProxConfig, LocalConfig, a_norm
from fedbench.engine.local import LocalSGD


def test_local_config_hands_every_key_to_local_sgd():
    cfg = LocalConfig(local_epochs=3, local_steps=7, batch_size=5, lr=0.25, momentum=0.5, weight_decay=0.125)
    assert cfg.local_sgd() == LocalSGD(
        lr=0.25, batch_size=5, local_epochs=3, local_steps=7, momentum=0.5, weight_decay=0.125
    )


def test_algorithm_state_dict_is_a_copy_of_the_state():
    alg = Algorithm(LocalConfig())
    assert alg.state_dict() == {}
    alg.state["h"] = torch.ones(2)
    sd = alg.state_dict()
    assert list(sd) == ["h"] and sd["h"] is alg.state["h"]
    sd["extra"] = torch.zeros(1)  # a new dict: changing it leaves the algorithm's state alone
    assert list(alg.state) == ["h"]


def test_fedprox_with_mu_zero_leaves_the_term_out():
    # mu = 0 is FedAvg: no per-client constant at all (not a tensor of zeros added every step).
    w0 = torch.tensor([1.0, -2.0])
    record = SimpleNamespace(n=3)
    plain = FedProx(FedProxConfig(mu=0.0))
    assert plain.coef == 0.0 and plain.constant is False
    assert plain.local_constant(None, record, w0) is None
    # mu = 0.5: coef 0.5 and k_i = -mu w0 = [-0.5, 1] for each of the 3 clients
    prox = FedProx(FedProxConfig(mu=0.5))
    assert prox.coef == 0.5 and prox.constant is True
    torch.testing.assert_close(prox.local_constant(None, record, w0), torch.tensor([[-0.5, 1.0]] * 3))


def test_fednova_normalises_by_sample_shares_and_reports_tau_eff():
    # Plain local SGD: ||a_i||_1 = tau_i = (2, 4). Updates / tau = [[2, 4] / 2, [4, 8] / 4] = [[1, 2], [1, 2]].
    # Weights given as shares that do not sum to 1 (0.1, 0.3): p = (0.25, 0.75), so
    # tau_eff = 0.25 * 2 + 0.75 * 4 = 3.5 and the step is 3.5 * aggregate.
    alg = FedNova(FedNovaConfig(momentum=0.0))
    record = SimpleNamespace(
        steps=np.array([2, 4]),
        updates=torch.tensor([[2.0, 4.0], [4.0, 8.0]]),
        payloads={},
        weights=torch.tensor([0.1, 0.3]),
    )
    assert alg.after_local(None, record, torch.zeros(2)) == {}
    torch.testing.assert_close(record.updates, torch.tensor([[1.0, 2.0], [1.0, 2.0]]))
    torch.testing.assert_close(record.payloads["a_norm"], torch.tensor([[2.0], [4.0]]))
    step, metrics = alg.server_step(None, record, torch.tensor([1.0, -2.0]))
    torch.testing.assert_close(step, torch.tensor([3.5, -7.0]))
    assert metrics == {"fednova_tau_eff": 3.5}


def test_a_norm_is_float64_and_matches_the_sum_of_momentum_weights():
    # ||a||_1 = sum_{j=1..tau} (1 - rho^j) / (1 - rho): for rho = 0.5, tau = 1, 2, 3 -> 1, 2.5, 4.25.
    tau = torch.tensor([1, 2, 3])
    assert a_norm(tau, 0.0).dtype == torch.float64
    torch.testing.assert_close(a_norm(tau, 0.0), torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(a_norm(tau, 0.5), torch.tensor([1.0, 2.5, 4.25], dtype=torch.float64))
    rho, t = 0.9, 37
    expected = sum((1 - rho**j) / (1 - rho) for j in range(1, t + 1))
    got = a_norm(torch.tensor([t]), rho)
    assert got.dtype == torch.float64 and abs(got.item() - expected) < 1e-12 * expected


def test_feddyn_client_gradient_accumulates_over_rounds():
    """g_k <- g_k - alpha (theta_k - theta): a client's second round starts from its first round's
    g_k (a mutant reading another state key restarted it from zero every round)."""
    from fedbench.algorithm import FedDyn, FedDynConfig
    from fedbench.round import RoundRecord
    from fedbench.state import ClientState

    sim = SimpleNamespace(client_state=ClientState(), layout=SimpleNamespace(dim=2), device=torch.device("cpu"))
    alg = FedDyn(FedDynConfig(alpha=0.5))
    for delta in ([1.0, 2.0], [3.0, -4.0]):
        record = RoundRecord(round=1, clients=np.array([7]), num_samples=np.array([5]), steps=np.array([1]))
        record.updates = torch.tensor([delta])
        alg.after_local(sim, record, torch.zeros(2))
    # g = -0.5 [1, 2] - 0.5 [3, -4] = [-2, 1]
    torch.testing.assert_close(sim.client_state.get("grad", np.array([7]), 2, "cpu"), torch.tensor([[-2.0, 1.0]]))


def test_scaffold_client_without_steps_keeps_its_control_and_state_stays_float32():
    """A client with no data ran K = 0 steps: option II's formula does not apply, its control stays
    and it uploads delta_c = 0. The controls keep the model's dtype (float32)."""
    from fedbench.algorithm import Scaffold, ScaffoldConfig
    from fedbench.round import RoundRecord
    from fedbench.state import ClientState

    sim = SimpleNamespace(
        client_state=ClientState(),
        layout=SimpleNamespace(dim=2),
        device=torch.device("cpu"),
        run=SimpleNamespace(num_clients=4),
    )
    alg = Scaffold(ScaffoldConfig(lr=0.5))
    alg.init(sim)
    alg.state["c"] = torch.tensor([1.0, -1.0])
    sim.client_state.set("c_i", np.array([3]), torch.tensor([[0.25, 0.5]]))
    record = RoundRecord(round=1, clients=np.array([1, 3]), num_samples=np.array([4, 0]), steps=np.array([2, 0]))
    record.updates = torch.tensor([[-1.0, 2.0], [0.0, 0.0]])
    alg.after_local(sim, record, torch.zeros(2))
    # client 1: c_1+ = 0 - [1, -1] + [1, -2] / (2 * 0.5) = [0, -1]; client 3: unchanged
    torch.testing.assert_close(record.payloads["delta_c"], torch.tensor([[0.0, -1.0], [0.0, 0.0]]))
    torch.testing.assert_close(
        sim.client_state.get("c_i", np.array([1, 3]), 2, "cpu"), torch.tensor([[0.0, -1.0], [0.25, 0.5]])
    )
    alg.server_step(sim, record, torch.zeros(2))
    assert record.payloads["delta_c"].dtype == alg.state["c"].dtype == torch.float32
