"""Engine equivalence, grouping and the no-fallback guarantee of the vmap engine."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from fake_runs import set_keys
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fedbench.config import validate
from fedbench.engine import (
    FlatParams,
    LocalRule,
    LocalSGD,
    SequentialEngine,
    VmapEngine,
    detect_fallbacks,
    group_by_steps,
    make_schedule,
)
from fedbench.models import build_model
from fedbench.simulation import Simulation


def tiny_config(**over):
    cfg = {
        "dataset": {"name": "digits"},
        "partition": {"name": "dirichlet_class", "alpha": 0.3, "min_size": 5},
        "model": {"name": "cnn_small"},
        "algorithm": {"name": "fedavg", "lr": 0.05, "batch_size": 16, "momentum": 0.9, "weight_decay": 1e-3},
        "server_opt": {"name": "sgd"},
        "engine": {"name": "vmap", "trace_after": 0},  # trace at once: the path long runs take
        "logger": {"name": "none"},
        "rounds": 3,
        "num_clients": 12,
        "clients_per_round": 6,
        "client_metrics": False,
        "progress": False,
        "device": "cpu",
    }
    return set_keys(cfg, over)


def rule(local: LocalSGD) -> LocalRule:
    """The plain SGD rule of ``local`` (weight decay as the linear term)."""
    return LocalRule(local.lr, local.momentum, local.weight_decay)


def run_rounds(cfg: dict, rounds: int) -> Simulation:
    sim = Simulation(validate(cfg))
    for _ in range(rounds):
        sim.step()
    return sim


@pytest.mark.parametrize(
    "over",
    [
        {"model.name": "cnn_small"},
        {"model": {"name": "mlp", "hidden": [32, 16]}},
        {"model": {"name": "logreg"}, "algorithm.momentum": 0.0},
        {"model": {"name": "cnn_small", "norm": "group", "groups": 4}, "algorithm.local_steps": 7},
        {"algorithm.local_epochs": 2, "algorithm.momentum": 0.0, "engine.max_pad_fraction": 0.0},
    ],
    ids=["cnn", "mlp", "logreg", "cnn-groupnorm-steps", "epochs2-nogrouping-slack"],
)
def test_engines_give_same_global_model(over):
    # Three rounds of 6 clients through momentum SGD: float rounding (measured 4e-8 to 2.2e-7
    # relative on these five configs, 2 threads) can be amplified by a flipped ReLU or max-pool
    # decision, and a small client (5 samples here) amplifies a different rounding of its few
    # steps. 1e-4 leaves that room; a wrong rule is far outside it (dropping the weight decay of
    # 1e-3 moves the cnn config by 9e-3, momentum 0.89 instead of 0.9 by 1.6e-2). The tight
    # per-client check is tests/test_algorithms.py.
    cfg = tiny_config(**over)
    vm = run_rounds(cfg, 3)
    cfg["engine"] = {"name": "sequential"}
    seq = run_rounds(cfg, 3)
    sizes = seq.sizes[np.unique(np.concatenate([seq.select(r)[0].clients for r in (1, 2, 3)]))]
    assert len(set(sizes.tolist())) > 1, "the test must cover clients of unequal sizes"
    assert not torch.equal(vm.params, Simulation(validate(cfg)).params), "training must have moved the model"
    rel = (vm.params - seq.params).norm() / seq.params.norm()
    assert rel < 1e-4, f"relative difference {rel:.2e}"


def test_engines_match_per_client_with_ragged_schedules():
    torch.manual_seed(0)
    x, y = torch.randn(300, 1, 8, 8), torch.randint(0, 10, (300,))
    model = build_model({"name": "cnn_small"}, (1, 8, 8), 10, seed=0)
    g = FlatParams(model).flatten(model)
    local = LocalSGD(lr=0.1, batch_size=8, local_epochs=1, momentum=0.5)
    bounds = np.cumsum([0, 5, 40, 17, 90, 8])
    scheds = [make_schedule(np.arange(a, b), local, 0, 1, i) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    assert sorted({s.steps for s in scheds}) == [1, 3, 5, 12]
    a, la = SequentialEngine(build_model({"name": "cnn_small"}, (1, 8, 8), 10), x, y, rule(local)).train(g, scheds)
    b, lb = VmapEngine(model, x, y, rule(local), 8, max_pad_fraction=0.9).train(g, scheds)
    for i in range(len(scheds)):
        assert torch.allclose(a[i], b[i], rtol=1e-4, atol=1e-6), f"client {i}"
    torch.testing.assert_close(la, lb, rtol=1e-4, atol=1e-6)


def test_schedule_covers_client_data_each_epoch():
    local = LocalSGD(lr=0.1, batch_size=4, local_epochs=2)
    samples = np.array([3, 9, 11, 20, 21, 40, 41, 42, 50, 77])
    s = make_schedule(samples, local, seed=1, round_=2, client=5)
    assert s.steps == 6 and s.lengths.tolist() == [4, 4, 2, 4, 4, 2]
    epoch1 = np.concatenate([s.index[i, : s.lengths[i]] for i in range(3)])
    assert sorted(epoch1.tolist()) == samples.tolist()
    assert (s.index[2, 2:] == -1).all()
    again = make_schedule(samples, local, seed=1, round_=2, client=5)
    assert np.array_equal(s.index, again.index)
    other = make_schedule(samples, local, seed=1, round_=3, client=5)
    assert not np.array_equal(s.index, other.index)
    fixed = make_schedule(samples, LocalSGD(lr=0.1, batch_size=4, local_steps=5), seed=1, round_=2, client=5)
    assert fixed.steps == 5 and fixed.lengths.tolist() == [4, 4, 2, 4, 4]


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.integers(1, 60), min_size=1, max_size=30),
    pad=st.floats(0.0, 0.9),
    cap=st.one_of(st.none(), st.integers(1, 8)),
)
def test_group_by_steps_partitions_and_bounds_padding(steps, pad, cap):
    groups = group_by_steps(steps, pad, cap)
    assert sorted(i for g in groups for i in g) == list(range(len(steps)))
    for g in groups:
        padded = len(g) * max(steps[i] for i in g)
        useful = sum(steps[i] for i in g)
        assert padded - useful <= pad * padded + 1e-9
        if cap is not None:
            assert len(g) <= cap


def test_group_by_steps_equal_steps_make_one_group():
    assert group_by_steps([6] * 10, 0.0) == [list(range(10))]
    assert [len(g) for g in group_by_steps([6] * 10, 0.0, 4)] == [4, 4, 2]


@pytest.mark.parametrize(
    "model_cfg, shape",
    [
        ({"name": "logreg"}, (1, 8, 8)),
        ({"name": "mlp", "hidden": [20]}, (1, 8, 8)),
        ({"name": "cnn_small"}, (1, 8, 8)),
        ({"name": "cnn_small", "norm": "group"}, (1, 8, 8)),
        ({"name": "cnn_mnist"}, (1, 28, 28)),
        ({"name": "cnn_mnist", "norm": "group"}, (1, 28, 28)),
    ],
)
def test_vmap_never_falls_back_to_a_loop_for_builtin_models(model_cfg, shape):
    torch.manual_seed(0)
    x, y = torch.randn(64, *shape), torch.randint(0, 10, (64,))
    model = build_model(model_cfg, shape, 10, seed=0)
    local = LocalSGD(lr=0.1, batch_size=8, momentum=0.9, weight_decay=1e-4)
    scheds = [make_schedule(np.arange(a, a + n), local, 0, 1, i) for i, (a, n) in enumerate([(0, 20), (20, 9)])]
    g = FlatParams(model).flatten(model)
    with detect_fallbacks() as ops:
        VmapEngine(model, x, y, rule(local), local.batch_size).train(g, scheds)
    assert ops == []


class _MaxNorm(nn.Linear):
    def forward(self, x):
        return nn.functional.linear(x, torch.renorm(self.weight, 2, 0, 1.0), self.bias)


def test_fallback_detector_catches_a_slow_op():
    # torch.renorm has no batching rule: the detector must report it, or the test above proves nothing.
    model = nn.Sequential(nn.Flatten(), _MaxNorm(64, 10))
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    local = LocalSGD(lr=0.1, batch_size=8)
    scheds = [make_schedule(np.arange(8 * i, 8 * i + 8), local, 0, 1, i) for i in range(2)]
    with detect_fallbacks() as ops:
        VmapEngine(model, x, y, rule(local), local.batch_size).train(FlatParams(model).flatten(model), scheds)
    assert "aten::renorm" in ops


def test_auto_engine_picks_vmap_and_buffers_are_refused():
    from fedbench.engine import make_engine

    local = LocalSGD(lr=0.1, batch_size=4)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    engine, note = make_engine("auto", mlp, x, y, rule(local), 4)
    assert engine.name == "vmap" and "vmap" in note
    bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    for name in ("auto", "vmap", "sequential"):
        with pytest.raises(ValueError, match="buffers.*BatchNorm.*GroupNorm"):
            make_engine(name, bn, x, y, rule(local), 4)


def test_model_with_batchnorm_is_a_one_line_config_error(tmp_path):
    """A BatchNorm model cannot be asked for in the config, and one built through the API is refused
    at set-up (a ConfigError, so the run is recorded as failed) rather than trained wrongly."""
    from fedbench.config import ConfigError
    from fedbench.models import register_model
    from fedbench.models.registry import MODELS

    cfg = tiny_config(**{"model": {"name": "cnn_small", "norm": "batch"}})
    with pytest.raises(ConfigError, match="model.norm='batch'.*GroupNorm"):
        validate(cfg)

    @register_model("bn_test")
    def bn_model(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, num_classes))

    try:
        from fedbench.models.zoo import LogRegConfig
        from fedbench.registry import _OPTIONS, Entry

        _OPTIONS["model"]["bn_test"] = Entry(LogRegConfig)
        with pytest.raises(ConfigError, match="BatchNorm.*model.norm=group"):
            Simulation(validate(tiny_config(**{"model": {"name": "bn_test"}})))
    finally:
        MODELS.pop("bn_test", None)
        _OPTIONS["model"].pop("bn_test", None)


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="torch.compile on CPU needs a C++ compiler"
)
def test_compiled_vmap_engine_matches_sequential():
    # Ragged groups (unequal sizes), momentum and weight decay, through torch.compile.
    cfg = tiny_config(
        **{"model": {"name": "mlp", "hidden": [16]}, "engine.compile": True, "engine.max_pad_fraction": 0.0}
    )
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = run_rounds(cfg, 3)
    # One graph: the round is one group even with grouping asked for (max_pad_fraction=0), so
    # unequal client step counts do not trigger a compilation per group size.
    assert counters["stats"]["unique_graphs"] == 1
    cfg["engine"] = {"name": "sequential"}
    seq = run_rounds(cfg, 3)
    rel = (compiled.params - seq.params).norm() / seq.params.norm()
    assert rel < 1e-4, f"relative difference {rel:.2e}"
