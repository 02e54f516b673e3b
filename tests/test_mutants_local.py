"""Tests that kill surviving mutants of the local training rule and the minibatch schedule
(fedbench/engine/local.py, fedbench/engine/schedule.py; see docs/testing.md).

Expected values are hand-computed in the comments or come from ``torch.nn.functional``.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedbench.engine.local import LocalRule, linear_term, per_sample_loss
from fedbench.engine.schedule import make_schedule


def test_per_sample_loss_on_one_unbatched_sample():
    # A single sample (no batch dim), as under a per-sample vmap: logits (C,), label a scalar.
    # logits (0, ln 3): softmax = (1/4, 3/4), so the loss of class 1 is -ln(3/4) = ln(4/3).
    logits = torch.tensor([0.0, torch.log(torch.tensor(3.0)).item()], dtype=torch.float64)
    loss = per_sample_loss(logits, torch.tensor(1))
    assert loss.shape == ()
    torch.testing.assert_close(loss, torch.log(torch.tensor(4.0 / 3.0, dtype=torch.float64)))


def test_per_sample_loss_with_two_leading_dims_matches_torch():
    # (clients, batch, classes): classes are the last dim, every other dim is a sample index.
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([[0, 4, 2], [1, 1, 3]])
    expected = F.cross_entropy(logits.reshape(6, 5), y.reshape(6), reduction="none").reshape(2, 3)
    torch.testing.assert_close(per_sample_loss(logits, y), expected)


def test_linear_term_into_a_separate_target_with_per_parameter_scales():
    # term(target, alpha, params, ...) adds alpha * coef * w into target (the momentum buffers'
    # path), here with one scale tensor per parameter: 0.5 * [2, 4] = [1, 2] and -1 * [3] = [-3].
    coef = 0.5
    params = [torch.tensor([2.0, 4.0]), torch.tensor([3.0])]
    target = [torch.tensor([10.0, 10.0]), torch.tensor([1.0])]
    alpha = [torch.tensor(1.0), torch.tensor(-2.0)]
    linear_term(coef)(target, alpha, params, None, None)
    torch.testing.assert_close(target[0], torch.tensor([11.0, 12.0]))
    torch.testing.assert_close(target[1], torch.tensor([-2.0]))
    # the weights themselves are untouched
    torch.testing.assert_close(params[0], torch.tensor([2.0, 4.0]))


def test_rule_without_momentum_allocates_no_buffers():
    # The step's state is the momentum buffers, or None without momentum (no n x d zeros kept).
    params = [torch.ones(3), torch.ones(2, 2)]
    assert LocalRule(0.1).init(params) is None
    assert LocalRule(0.1, momentum=0.0, coef=0.5, constant=True).init(params) is None
    buffers = LocalRule(0.1, momentum=0.9).init(params)
    assert [b.shape for b in buffers] == [p.shape for p in params] and all(not b.any() for b in buffers)


def test_rule_with_constants_refuses_a_step_without_them():
    rule = LocalRule(0.1, constant=True)
    params = [torch.ones(2)]
    with pytest.raises(ValueError, match=r"^this rule adds a per-client constant: pass const$"):
        rule.step_(params, [torch.ones(2)], rule.init(params))
    torch.testing.assert_close(params[0], torch.ones(2))  # nothing was applied


def test_schedule_draws_only_the_passes_it_needs():
    # A client with 20000 samples in batches of 1 running 20000 steps makes exactly one pass:
    # one permutation of its samples, every batch of length 1. The work is linear in the steps
    # (drawing ceil(steps * per_pass) = 4e8 passes instead of ceil(steps / per_pass) = 1 would need
    # petabytes).
    n = 20000
    samples = np.arange(n, dtype=np.int64) * 3
    start = time.perf_counter()
    sched = make_schedule(samples, SimpleNamespace(batch_size=1, local_epochs=1, local_steps=n), 0, 1, 0)
    assert time.perf_counter() - start < 5.0
    assert sched.index.shape == (n, 1) and (sched.lengths == 1).all()
    assert np.array_equal(np.sort(sched.index[:, 0]), samples)
