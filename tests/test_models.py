from __future__ import annotations

import pytest
import torch

from fedbench.data import load_dataset
from fedbench.models import build_model, count_params


@pytest.mark.parametrize(
    "cfg, shape, expected",
    [
        ({"name": "mlp", "hidden": [200, 200]}, (1, 28, 28), 199_210),  # McMahan et al. 2017, 2NN
        ({"name": "cnn_mnist"}, (1, 28, 28), 1_663_370),  # McMahan et al. 2017, CNN
        ({"name": "logreg"}, (1, 8, 8), 64 * 10 + 10),
        ({"name": "cnn_small"}, (1, 8, 8), 320 + 18_496 + 256 * 128 + 128 + 1_290),
    ],
)
def test_parameter_counts_match_the_papers(cfg, shape, expected):
    model = build_model(cfg, shape, 10)
    assert count_params(model) == expected
    assert model(torch.zeros(2, *shape)).shape == (2, 10)
    assert not list(model.buffers()), "buffer-free, so every model runs under vmap"


def test_init_stream_is_deterministic():
    a = build_model({"name": "cnn_small"}, (1, 8, 8), 10, seed=3)
    b = build_model({"name": "cnn_small"}, (1, 8, 8), 10, seed=3)
    c = build_model({"name": "cnn_small"}, (1, 8, 8), 10, seed=4)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert any(not torch.equal(p, r) for p, r in zip(a.parameters(), c.parameters()))
    state = torch.random.get_rng_state()
    build_model({"name": "mlp"}, (1, 8, 8), 10, seed=5)
    assert torch.equal(state, torch.random.get_rng_state()), "model init must not consume the global RNG"


def test_cnn_rejects_flat_inputs():
    with pytest.raises(ValueError, match="channels, height, width"):
        build_model({"name": "cnn_mnist"}, (784,), 10)


def test_digits_dataset_is_fixed_and_standardised():
    a, b = load_dataset({"name": "digits"}, seed=0), load_dataset({"name": "digits"}, seed=7)
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert a.num_classes == 10 and a.input_shape == (1, 8, 8)
    assert torch.equal(a.x_test, b.x_test), "the test split does not depend on the seed"
    assert abs(a.x_train.mean().item()) < 1e-5 and abs(a.x_train.std().item() - 1) < 1e-3
    assert torch.bincount(a.y_test).min() >= 35, "stratified split keeps every class in the test set"


def test_synthetic_dataset_shape_and_seed():
    cfg = {"name": "synthetic", "input_shape": [3, 4, 4], "num_classes": 5, "num_train": 50, "num_test": 20}
    a, b = load_dataset(cfg, 0), load_dataset(cfg, 0)
    assert a.x_train.shape == (50, 3, 4, 4) and a.y_test.shape == (20,) and int(a.y_train.max()) < 5
    assert torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.x_train, load_dataset(cfg, 1).x_train)
