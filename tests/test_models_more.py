"""The benchmark models: simple_cnn, resnet8, resnet18, char_lstm (and logreg on flat features).

Parameter counts against hand arithmetic, output shapes, no buffers, the hand-written LSTM against
``nn.LSTM``, and every model trained alike by the engines that accept it (all of them).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_engine import rule, run_rounds, tiny_config
from torch import nn

from fedbench.config import ConfigError, compose, validate
from fedbench.engine import (
    FlatParams,
    LocalSGD,
    SequentialEngine,
    VmapEngine,
    detect_fallbacks,
    make_engine,
    make_schedule,
    model_supported,
)
from fedbench.evaluate import per_sample
from fedbench.models import build_model, count_params
from fedbench.simulation import Simulation

# ---- parameter counts ----------------------------------------------------------------------------
# simple_cnn (NIID-Bench SimpleCNN / SimpleCNNMNIST; conv k x k: c_in * c_out * k * k + c_out):
#   conv1 c*6*25 + 6, conv2 6*16*25 + 16 = 2,416, fc 120 -> 84 -> 10: 120*84 + 84 = 10,164, 84*10 + 10 = 850
#   3x32x32: 32 -conv5-> 28 -pool-> 14 -conv5-> 10 -pool-> 5: conv1 456, fc1 400*120 + 120 = 48,120
#            456 + 2,416 + 48,120 + 10,164 + 850 = 62,006
#   1x28x28: 28 -> 24 -> 12 -> 8 -> 4: conv1 156, fc1 256*120 + 120 = 30,840
#            156 + 2,416 + 30,840 + 10,164 + 850 = 44,426
SIMPLE_CNN_CIFAR = 456 + 2_416 + 48_120 + 10_164 + 850
SIMPLE_CNN_MNIST = 156 + 2_416 + 30_840 + 10_164 + 850


def _resnet(cin: int, widths: list[int], blocks: int, classes: int) -> int:
    """Bias-free 3x3 convolutions, GroupNorm with a scale and shift per channel (2 c), a 1x1
    convolution with GroupNorm on every shortcut that changes the shape, a linear output."""
    n = cin * widths[0] * 9 + 2 * widths[0]  # stem
    c = widths[0]
    for i, w in enumerate(widths):
        for b in range(blocks):
            n += c * w * 9 + 2 * w + w * w * 9 + 2 * w  # conv1 + norm1 + conv2 + norm2
            if (i > 0 and b == 0) or c != w:
                n += c * w + 2 * w  # 1x1 shortcut + norm
            c = w
    return n + c * classes + classes


# resnet8 on 3 channels, 10 classes:
#   stem 3*16*9 + 32 = 464
#   stage 1 (16 -> 16): 2,304 + 32 + 2,304 + 32 = 4,672
#   stage 2 (16 -> 32, stride 2): 4,608 + 64 + 9,216 + 64 + shortcut 512 + 64 = 14,528
#   stage 3 (32 -> 64, stride 2): 18,432 + 128 + 36,864 + 128 + shortcut 2,048 + 128 = 57,728
#   fc 64*10 + 10 = 650;  total 464 + 4,672 + 14,528 + 57,728 + 650 = 78,042
RESNET8 = 464 + 4_672 + 14_528 + 57_728 + 650
# resnet18 on 3 channels, 10 classes (the CIFAR ResNet-18 of kuangliu/pytorch-cifar and NIID-Bench,
# 11,173,962 with BatchNorm, which has the same 2 c affine parameters per norm layer):
#   stem 1,728 + 128 = 1,856
#   stage 1: 2 blocks * 2 * (36,864 + 128) = 147,968
#   stage 2: 73,728 + 256 + 147,456 + 256 + 8,192 + 256 = 230,144; + 2 * (147,456 + 256) = 525,568
#   stage 3: 294,912 + 512 + 589,824 + 512 + 32,768 + 512 = 919,040; + 2 * (589,824 + 512) = 2,099,712
#   stage 4: 1,179,648 + 1,024 + 2,359,296 + 1,024 + 131,072 + 1,024 = 3,673,088; + 2 * (2,359,296 + 1,024)
#            = 8,393,728
#   fc 512*10 + 10 = 5,130;  total 1,856 + 147,968 + 525,568 + 2,099,712 + 8,393,728 + 5,130 = 11,173,962
RESNET18 = 1_856 + 147_968 + 525_568 + 2_099_712 + 8_393_728 + 5_130
# char_lstm, LEAF Shakespeare (80 characters in and out, embedding 8, 2 x LSTM 256, one bias per layer):
#   embedding 80*8 = 640
#   layer 1: W_ih 1024*8 = 8,192, W_hh 1024*256 = 262,144, b 1,024 -> 271,360
#   layer 2: W_ih 1024*256 = 262,144, W_hh 262,144, b 1,024 -> 525,312
#   fc 256*80 + 80 = 20,560;  total 640 + 271,360 + 525,312 + 20,560 = 817,872
#   (nn.LSTM's two biases per layer would add 2 * 1,024: 819,920)
CHAR_LSTM = 640 + 271_360 + 525_312 + 20_560


def test_hand_arithmetic_agrees_with_the_formula():
    assert _resnet(3, [16, 32, 64], 1, 10) == RESNET8 == 78_042
    assert _resnet(3, [64, 128, 256, 512], 2, 10) == RESNET18 == 11_173_962
    assert SIMPLE_CNN_CIFAR == 62_006 and SIMPLE_CNN_MNIST == 44_426 and CHAR_LSTM == 817_872


def _input(shape: tuple[int, ...], n: int = 2) -> torch.Tensor:
    if len(shape) == 1 and shape[0] == 80:
        return torch.randint(0, 80, (n, *shape))  # character ids
    return torch.randn(n, *shape)


@pytest.mark.parametrize(
    "cfg, shape, classes, expected",
    [
        ({"name": "simple_cnn"}, (3, 32, 32), 10, SIMPLE_CNN_CIFAR),
        ({"name": "simple_cnn"}, (1, 28, 28), 10, SIMPLE_CNN_MNIST),
        ({"name": "resnet8"}, (3, 32, 32), 10, RESNET8),
        ({"name": "resnet8"}, (1, 28, 28), 10, _resnet(1, [16, 32, 64], 1, 10)),
        ({"name": "resnet8", "groups": 16}, (3, 32, 32), 100, _resnet(3, [16, 32, 64], 1, 100)),
        ({"name": "resnet18"}, (3, 32, 32), 10, RESNET18),
        ({"name": "resnet18"}, (1, 28, 28), 10, _resnet(1, [64, 128, 256, 512], 2, 10)),
        ({"name": "char_lstm"}, (80,), 80, CHAR_LSTM),
        ({"name": "logreg"}, (60,), 10, 60 * 10 + 10),  # FedProx's synthetic data: 60 features, 10 classes
        ({"name": "logreg"}, (3, 32, 32), 10, 3_072 * 10 + 10),
    ],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else None,
)
def test_parameter_counts_shapes_and_no_buffers(cfg, shape, classes, expected):
    model = build_model(cfg, shape, classes, seed=0)
    assert count_params(model) == expected
    assert model(_input(shape)).shape == (2, classes)
    assert not list(model.buffers()), "buffer-free, so every engine trains it"
    assert model_supported(model) == (True, "")


def test_models_refuse_inputs_they_cannot_take():
    with pytest.raises(ValueError, match="at least 16x16"):
        build_model({"name": "simple_cnn"}, (1, 8, 8), 10)
    for name in ("simple_cnn", "resnet8", "resnet18"):
        with pytest.raises(ValueError, match="channels, height, width"):
            build_model({"name": name}, (60,), 10)
    with pytest.raises(ValueError, match=r"\(seq_len,\) token-id"):
        build_model({"name": "char_lstm"}, (1, 28, 28), 10)
    with pytest.raises(ValueError, match=r"groups=3 must divide .*\(16, 32, 64\)"):
        build_model({"name": "resnet8", "groups": 3}, (3, 32, 32), 10)


def test_resnet_groups_errors_are_config_errors():
    with pytest.raises(ConfigError, match="model.groups=0: out of range"):
        validate(compose("model=resnet18", "model.groups=0"))
    cfg = tiny_config(**{"model": {"name": "resnet8", "groups": 5}})
    with pytest.raises(ConfigError, match="resnet8.*groups=5 must divide"):
        Simulation(validate(cfg))


def test_config_options_compose_to_the_documented_defaults():
    run = validate(compose("model=char_lstm"))
    assert (run.model.embed, run.model.hidden, run.model.layers, run.model.vocab) == (8, 256, 2, None)
    assert validate(compose("model=resnet8")).model.groups == 2
    assert validate(compose("model=resnet18")).model.name == "resnet18"
    assert validate(compose("model=simple_cnn")).model.name == "simple_cnn"


# ---- the hand-written LSTM is nn.LSTM ------------------------------------------------------------
class _TorchCharLSTM(nn.Module):
    """The reference: nn.Embedding, nn.LSTM (batch_first), nn.Linear on the last output."""

    def __init__(self, vocab, classes, embed, hidden, layers):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))
        return self.fc(out[:, -1])


def test_char_lstm_equals_torch_lstm_with_the_same_weights():
    # float64, so the only differences are the order of float operations: 1e-10 is far above
    # that (measured ~1e-16) and far below any real difference (a swapped gate, a missing bias).
    model = build_model({"name": "char_lstm", "hidden": 16, "layers": 3}, (12,), 30, seed=1).double()
    ref = _TorchCharLSTM(30, 30, 8, 16, 3).double()
    with torch.no_grad():
        ref.embed.weight.copy_(model.embed.weight)
        ref.fc.weight.copy_(model.fc.weight)
        ref.fc.bias.copy_(model.fc.bias)
        for k, layer in enumerate(model.lstm):
            getattr(ref.lstm, f"weight_ih_l{k}").copy_(layer.weight_ih)
            getattr(ref.lstm, f"weight_hh_l{k}").copy_(layer.weight_hh)
            getattr(ref.lstm, f"bias_ih_l{k}").copy_(layer.bias)
            getattr(ref.lstm, f"bias_hh_l{k}").zero_()  # one bias per layer, as LEAF's BasicLSTMCell
    tokens, target = torch.randint(0, 30, (5, 12)), torch.randint(0, 30, (5,))
    out, expected = model(tokens), ref(tokens)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    nn.functional.cross_entropy(out, target).backward()
    nn.functional.cross_entropy(expected, target).backward()
    torch.testing.assert_close(model.embed.weight.grad, ref.embed.weight.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.fc.weight.grad, ref.fc.weight.grad, rtol=1e-10, atol=1e-10)
    for k, layer in enumerate(model.lstm):
        for mine, theirs in [("weight_ih", "weight_ih"), ("weight_hh", "weight_hh"), ("bias", "bias_ih")]:
            a, b = getattr(layer, mine).grad, getattr(ref.lstm, f"{theirs}_l{k}").grad
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"layer {k} {mine}")


def test_char_lstm_init_matches_torch_lstm_range():
    model = build_model({"name": "char_lstm"}, (80,), 80, seed=0)
    for layer in model.lstm:
        for p in layer.parameters():
            assert p.abs().max() <= 256**-0.5 and p.std() > 0.5 * 256**-0.5 / 3**0.5


# ---- the engines train every model alike ---------------------------------------------------------
def _sim_config(model: dict, shape: tuple[int, ...]) -> dict:
    """tiny_config (momentum 0.9, weight decay 1e-3, traced vmap steps) on a small synthetic dataset:
    6 clients of unequal sizes (Dirichlet), 3 per round, 2 local steps of batches of 8."""
    data = {"name": "synthetic", "input_shape": list(shape), "num_classes": 10, "num_train": 120, "num_test": 20}
    return tiny_config(
        **{
            "dataset": data,
            "partition": {"name": "dirichlet_class", "alpha": 0.5, "min_size": 5},
            "model": model,
            "algorithm.local_steps": 2,
            "algorithm.batch_size": 8,
            "num_clients": 6,
            "clients_per_round": 3,
        }
    )


@pytest.mark.parametrize(
    "model, shape",
    [
        ({"name": "simple_cnn"}, (1, 28, 28)),
        ({"name": "simple_cnn"}, (3, 32, 32)),
        ({"name": "resnet8"}, (3, 32, 32)),
        ({"name": "resnet18"}, (3, 8, 8)),  # the same layers at 1/16 of the arithmetic of 32x32
        ({"name": "logreg"}, (60,)),
    ],
    ids=["simple_cnn-mnist", "simple_cnn-cifar", "resnet8", "resnet18-8x8", "logreg-60"],
)
def test_vmap_and_sequential_engines_give_the_same_global_model(model, shape):
    # Two rounds of 3 clients, 2 momentum-SGD steps each. Measured relative difference of the
    # global models: 1.5e-8 to 2.5e-8 (float32 rounding, 2 threads). 1e-6 leaves a 40x margin
    # and is far below what a wrong local rule does: dropping the weight decay moves these models
    # by 2.8e-4 to 2.9e-4, momentum 0.89 instead of 0.9 by 4.5e-5 (simple_cnn) to 1.1e-3 (logreg).
    cfg = _sim_config(model, shape)
    vm = run_rounds(cfg, 2)
    cfg["engine"] = {"name": "sequential"}
    seq = run_rounds(cfg, 2)
    assert len(set(seq.sizes.tolist())) > 1, "clients of unequal sizes"
    init = Simulation(validate(cfg)).params
    assert (seq.params - init).norm() > 1e-3 * seq.params.norm(), "training must have moved the model"
    rel = (vm.params - seq.params).norm() / seq.params.norm()
    assert rel < 1e-6, f"relative difference {rel:.2e}"


def _token_problem():
    """60 sequences of 12 character ids over an 80-symbol alphabet, split into 4 clients of
    5, 17, 9 and 29 samples; batches of 4 give 2, 5, 3 and 8 steps (ragged groups, short batches)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 80, (60, 12), generator=g), torch.randint(0, 80, (60,), generator=g)
    local = LocalSGD(lr=0.5, batch_size=4, momentum=0.5, weight_decay=1e-3)
    bounds = np.cumsum([0, 5, 17, 9, 29])
    scheds = [make_schedule(np.arange(a, b), local, 0, 1, i) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    return x, y, local, scheds


@pytest.mark.parametrize("trace", [False, True], ids=["untraced", "traced"])
def test_char_lstm_engines_agree_per_client(trace):
    # The synthetic dataset makes floats, not character ids, so the engines are called directly.
    # Measured per-client relative differences: 2e-9 untraced, 2e-9 to 6e-9 traced (the fused bmm
    # updates sum in another order), after training moved the model by 7.6e-2; the tolerance is
    # test_engine's per-client one.
    x, y, local, scheds = _token_problem()
    cfg = {"name": "char_lstm", "hidden": 32}
    model = build_model(cfg, (12,), 80, seed=0)
    g = FlatParams(model).flatten(model)
    a, la = SequentialEngine(build_model(cfg, (12,), 80), x, y, rule(local)).train(g, scheds)
    vm = VmapEngine(model, x, y, rule(local), local.batch_size, max_pad_fraction=0.9, trace=trace, trace_after=0)
    with detect_fallbacks() as ops:
        b, lb = vm.train(g, scheds)
    assert ops == [], "every op of the LSTM has a vmap batching rule: no per-client loop"
    assert (a - g).norm() > 1e-2 * g.norm(), "training must have moved the model"
    for i in range(len(scheds)):
        torch.testing.assert_close(a[i], b[i], rtol=1e-4, atol=1e-6, msg=f"client {i}")
    torch.testing.assert_close(la, lb, rtol=1e-4, atol=1e-6)


def test_char_lstm_runs_under_auto_and_evaluates_token_ids():
    x, y, local, _ = _token_problem()
    model = build_model({"name": "char_lstm", "hidden": 32}, (12,), 80, seed=0)
    engine, note = make_engine("auto", model, x, y, rule(local), local.batch_size)
    assert engine.name == "vmap" and "vmap" in note
    layout = FlatParams(model)
    loss, correct = per_sample(model, layout.unflatten(layout.flatten(model)), x, y, 16)
    assert loss.shape == (60,) and correct.dtype == torch.bool
    torch.testing.assert_close(loss, nn.functional.cross_entropy(model(x), y, reduction="none"))


@pytest.mark.parametrize(
    "cfg, shape",
    [({"name": "simple_cnn"}, (3, 32, 32)), ({"name": "resnet8"}, (3, 32, 32)), ({"name": "resnet18"}, (3, 8, 8))],
)
def test_vmap_never_falls_back_to_a_loop(cfg, shape):
    torch.manual_seed(0)
    x, y = torch.randn(24, *shape), torch.randint(0, 10, (24,))
    model = build_model(cfg, shape, 10, seed=0)
    local = LocalSGD(lr=0.1, batch_size=4, momentum=0.9, weight_decay=1e-4)
    scheds = [make_schedule(np.arange(a, a + n), local, 0, 1, i) for i, (a, n) in enumerate([(0, 8), (8, 6)])]
    with detect_fallbacks() as ops:
        VmapEngine(model, x, y, rule(local), local.batch_size).train(FlatParams(model).flatten(model), scheds)
    assert ops == []
