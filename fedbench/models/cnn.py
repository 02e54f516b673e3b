"""NIID-Bench's SimpleCNN (a LeNet-5-style network)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fedbench.models.registry import register_model
from fedbench.models.zoo import _image_shape
from fedbench.registry import register


@register("model", "simple_cnn")
@dataclass
class SimpleCNNConfig:
    name: str = "simple_cnn"


def _valid_conv_pool(size: int) -> int:
    """Side length after a 5x5 convolution without padding and a 2x2 max pooling."""
    return (size - 4) // 2


@register_model("simple_cnn")
def simple_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The ``SimpleCNN`` of NIID-Bench (Li et al. 2022, "Federated Learning on Non-IID Data Silos:
    An Experimental Study", ``model.py``): a 5x5 convolution to 6 channels, ReLU, 2x2 max pooling, a
    5x5 convolution to 16 channels, ReLU, 2x2 max pooling, then fully connected layers of 120 and
    84 ReLU units and a linear output. Convolutions have no padding.

    The first fully connected layer's input is computed from the input shape: 16 * 5 * 5 on
    3x32x32 (NIID-Bench's ``SimpleCNN`` for CIFAR-10 and SVHN, 62,006 parameters with 10 classes)
    and 16 * 4 * 4 on 1x28x28 (their ``SimpleCNNMNIST`` for MNIST, FMNIST and FEMNIST, 44,426
    parameters), so one option covers both.
    """
    c, h, w = _image_shape(input_shape)
    h2, w2 = _valid_conv_pool(_valid_conv_pool(h)), _valid_conv_pool(_valid_conv_pool(w))
    if h2 < 1 or w2 < 1:
        raise ValueError(f"simple_cnn needs inputs of at least 16x16 pixels, got shape {tuple(input_shape)}")
    return nn.Sequential(
        nn.Conv2d(c, 6, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * h2 * w2, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )
