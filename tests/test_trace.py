"""Traced vmap steps: the bmm-update rewrite on hand-computed cases, and traced == untraced."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine import run_rounds, tiny_config
from torch.fx.experimental.proxy_tensor import make_fx

from fedbench.engine.trace import TracedStep, drop_identity_views, fuse_bmm_updates

aten = torch.ops.aten
A = torch.tensor([[[1.0], [2.0]], [[0.0], [1.0]]])  # (2 clients, 2, 1)
B = torch.tensor([[[1.0, 0.0, 2.0]], [[3.0, 1.0, 0.0]]])  # (2 clients, 1, 3)
# A @ B per client: [[1, 0, 2], [2, 0, 4]] and [[0, 0, 0], [3, 1, 0]].


def targets(gm) -> list:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def test_fused_sgd_update_hand_computed():
    def step(w, bias, a, b):
        torch._foreach_add_([w, bias], [torch.bmm(a, b), bias * 2], alpha=-0.5)

    w, bias = torch.ones(2, 2, 3), torch.ones(2, 3)
    gm = make_fx(step, tracing_mode="fake")(w, bias, A, B)
    assert fuse_bmm_updates(gm) == 1
    assert aten.bmm.default not in targets(gm) and aten.baddbmm_.default in targets(gm)
    gm(w, bias, A, B)
    expected = torch.tensor([[[0.5, 1, 0], [0, 1, -1]], [[1, 1, 1], [-0.5, 0.5, 1]]])
    torch.testing.assert_close(w, expected, rtol=0, atol=0)
    torch.testing.assert_close(bias, torch.zeros(2, 3), rtol=0, atol=0)  # 1 - 0.5 * 2, left in the foreach


def test_fused_update_with_one_step_size_per_client():
    def step(w, a, b, s):
        torch._foreach_addcmul_([w], [torch.bmm(a, b)], [s.view(-1, 1, 1)])

    w, s = torch.ones(2, 2, 3), torch.tensor([-1.0, 0.0])  # the second client is frozen
    gm = make_fx(step, tracing_mode="fake")(w, A, B, s)
    assert fuse_bmm_updates(gm) == 1 and aten._foreach_addcmul_.Scalar not in targets(gm)
    gm(w, A, B, s)
    expected = torch.tensor([[[0.0, 1, -1], [-1, 1, -3]], [[1, 1, 1], [1, 1, 1]]])
    torch.testing.assert_close(w, expected, rtol=0, atol=0)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4),
    out=st.integers(1, 5),
    k=st.integers(1, 4),
    inp=st.integers(1, 6),
    alpha=st.sampled_from([1.0, -0.05, -1.0, 0.3]),
    scaled=st.booleans(),
    momentum=st.booleans(),
)
def test_fused_updates_equal_unfused_on_random_shapes(n, out, k, inp, alpha, scaled, momentum):
    """The rewritten graph computes what the traced one did, for the update forms sgd_step_ emits."""

    def step(w, buf, a, b, s):
        g = torch.bmm(a, b)
        target = buf if momentum else w
        if scaled:
            torch._foreach_addcmul_([target], [g], [s.view(-1, 1, 1)])
        else:
            torch._foreach_add_([target], [g], alpha=alpha)

    gen = torch.Generator().manual_seed(n * 1000 + out * 100 + k * 10 + inp)
    args = [torch.randn(n, out, inp, generator=gen), torch.randn(n, out, inp, generator=gen)]
    args += [
        torch.randn(n, out, k, generator=gen),
        torch.randn(n, k, inp, generator=gen),
        torch.randn(n, generator=gen),
    ]
    gm = make_fx(step, tracing_mode="fake")(*args)
    assert fuse_bmm_updates(gm) == 1
    ref = [t.clone() for t in args]
    step(*ref)
    gm(*args)
    torch.testing.assert_close(args[0], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(args[1], ref[1], rtol=1e-5, atol=1e-5)


def test_gradient_read_elsewhere_or_transposed_is_left_alone():
    def read_twice(w, a, b):
        g = torch.bmm(a, b)
        torch._foreach_add_([w], [g], alpha=-1.0)
        return g.sum()

    def transposed(w, a, b):  # w is (n, 3, 2): the update is bmm(a, b)^T, not bmm(a, b)
        torch._foreach_add_([w], [torch.bmm(a, b).transpose(1, 2)], alpha=-1.0)

    for fn, w in ((read_twice, torch.zeros(2, 2, 3)), (transposed, torch.zeros(2, 3, 2))):
        gm = make_fx(fn, tracing_mode="fake")(w, A, B)
        assert fuse_bmm_updates(gm) == 0
        ref = w.clone()
        fn(ref, A, B)
        gm(w, A, B)
        torch.testing.assert_close(w, ref, rtol=0, atol=0)


def test_identity_views_are_dropped_and_real_ones_kept():
    def fn(x):
        y = x.view(2, 6).expand(2, 6)  # identity expand of a real view
        z = y.transpose(0, 1).transpose(0, 1)  # a pair that cancels
        return (z * 2).view(2, 6).sum(0) + x.transpose(0, 1).reshape(-1)[:6]

    x = torch.arange(12.0).view(3, 4)
    gm = make_fx(fn, tracing_mode="fake")(x)
    before = len(gm.graph.nodes)
    assert drop_identity_views(gm) == 4  # expand, the two transposes, view(2, 6) of a (2, 6)
    assert len(gm.graph.nodes) == before - 4
    assert targets(gm).count(aten.view.default) >= 1, "the reshaping view(2, 6) of (3, 4) stays"
    torch.testing.assert_close(gm(x), fn(x), rtol=0, atol=0)


def test_traced_step_traces_each_signature_after_it_recurs():
    calls = []

    def fn(x, y):
        calls.append(x.shape)
        return x * 2 + (0 if y is None else y)

    step = TracedStep(fn, after=2)
    for _ in range(4):
        assert torch.equal(step(torch.ones(3), None), torch.full((3,), 2.0))
    assert len(step.graphs) == 1 and len(calls) == 2 + 1  # 2 untraced calls, then one trace
    step(torch.ones(3), torch.ones(3))  # another signature: None became a tensor
    step(torch.ones(4), None)  # another shape
    assert len(step.graphs) == 1 and len(step.calls) == 3


@pytest.mark.parametrize(
    "over",
    [
        {"model.name": "cnn_small"},  # momentum 0.9 and weight decay
        {"model": {"name": "mlp", "hidden": [32, 16]}, "algorithm.weight_decay": 0.0},
        {"model": {"name": "logreg"}, "algorithm.momentum": 0.0},  # weight decay without momentum
        {"model": {"name": "mlp", "hidden": [24]}, "algorithm.momentum": 0.0, "engine.max_pad_fraction": 0.9},
        {"model": {"name": "cnn_small", "norm": "group", "groups": 4}},
    ],
    ids=["cnn-momentum-wd", "mlp-momentum", "logreg-wd", "mlp-ragged-sgd", "cnn-groupnorm-momentum"],
)
def test_traced_engine_matches_untraced(over):
    # Every built-in model ends in a Linear layer, so every traced step has an update to fuse.
    cfg = tiny_config(**over)
    cfg["engine"] = {"name": "vmap", "trace_after": 0, **{k: v for k, v in cfg["engine"].items() if k != "name"}}
    traced = run_rounds(cfg, 3)
    graphs = list(traced.engine._train_step.graphs.values())
    assert graphs, "trace_after=0 must trace"
    assert all(aten.baddbmm_.default in targets(g) for g in graphs)
    cfg["engine"]["trace"] = False
    eager = run_rounds(cfg, 3)
    rel = (traced.params - eager.params).norm() / eager.params.norm()
    assert rel < 1e-5, f"relative difference {rel:.2e}"
