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
