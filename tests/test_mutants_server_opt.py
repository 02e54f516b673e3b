"""Tests that kill surviving mutants of fedbench's server optimizers and aggregation (see docs/testing.md).

Every expected value is computed by hand in the comments, from the update rules in the module
docstrings, not from the library.
"""

from __future__ import annotations

import math

import pytest
import torch

from fedbench.aggregator import weighted_mean
from fedbench.server_opt import server_adaptive, server_sgd


def test_server_sgd_defaults_are_fedavgs_server():
    # server_sgd() is FedAvg's server: lr = 1, no momentum, so no state and the step is Delta itself.
    opt = server_sgd()
    state = opt.init(torch.zeros(2))
    assert state is None
    step, state, metrics = opt.update(torch.tensor([0.25, -3.0]), state)
    assert torch.equal(step, torch.tensor([0.25, -3.0])) and state is None and metrics == {}
    # a second step is not influenced by the first (momentum would give 0.25 + 1 = 1.25 with momentum 1)
    step, state, _ = opt.update(torch.tensor([1.0, 1.0]), state)
    assert torch.equal(step, torch.tensor([1.0, 1.0]))


def test_server_sgd_without_momentum_keeps_no_state():
    # With momentum = 0 there is nothing to checkpoint: the state is None, not a buffer of zeros.
    assert server_sgd(lr=0.5).init(torch.zeros(3)) is None
    assert server_sgd(lr=0.5, momentum=0.0).init(torch.zeros(3)) is None
    state = server_sgd(lr=0.5, momentum=0.5).init(torch.zeros(3))
    assert torch.equal(state["v"], torch.zeros(3))


def test_unknown_adaptive_kind_names_itself_in_the_error():
    with pytest.raises(ValueError, match=r"unknown adaptive server optimizer 'rmsprop'"):
        server_adaptive("rmsprop", 0.1, 0.9, 0.99, 1e-3)


def test_yogi_leaves_v_alone_when_v_equals_delta_squared():
    # tau = 0.5 so v_{-1} = 0.25 exactly. Coordinate 0: Delta = 0.5, Delta^2 = 0.25 = v, sign(0) = 0,
    # so v stays 0.25; m = 0.1 * 0.5 = 0.05; step = 0.1 * 0.05 / (0.5 + 0.5) = 0.005.
    # Coordinate 1: Delta = 2, Delta^2 = 4, sign(0.25 - 4) = -1, v = 0.25 + 0.01 * 4 = 0.29;
    # m = 0.1 * 2 = 0.2; step = 0.1 * 0.2 / (sqrt(0.29) + 0.5).
    opt = server_adaptive("yogi", lr=0.1, beta1=0.9, beta2=0.99, tau=0.5)
    state = opt.init(torch.zeros(2, dtype=torch.float64))
    step, state, _ = opt.update(torch.tensor([0.5, 2.0], dtype=torch.float64), state)
    expected_step = torch.tensor([0.005, 0.02 / (math.sqrt(0.29) + 0.5)], dtype=torch.float64)
    torch.testing.assert_close(step, expected_step)
    torch.testing.assert_close(state["v"], torch.tensor([0.25, 0.29], dtype=torch.float64))
    torch.testing.assert_close(state["m"], torch.tensor([0.05, 0.2], dtype=torch.float64))


@pytest.mark.parametrize(
    "u_dtype, w_dtype", [(torch.float32, torch.float64), (torch.float64, torch.int64), (torch.float32, torch.int64)]
)
def test_weighted_mean_takes_the_updates_dtype_whatever_the_weights_dtype(u_dtype, w_dtype):
    # Weights are often integer sample counts; the mean is in the updates' dtype.
    # (2 * [1, 4] + 6 * [5, 0]) / 8 = [32, 8] / 8 = [4, 1]
    u = torch.tensor([[1.0, 4.0], [5.0, 0.0]], dtype=u_dtype)
    w = torch.tensor([2, 6], dtype=w_dtype)
    out = weighted_mean(u, w)
    assert out.dtype == u_dtype
    torch.testing.assert_close(out, torch.tensor([4.0, 1.0], dtype=u_dtype))
