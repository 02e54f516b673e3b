"""The built-in models."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from fedbench.models.registry import register_model
from fedbench.registry import integer, option, register

_NORM = (
    lambda v: v in ("none", "group"),
    "none or group (BatchNorm is not offered: its running statistics are not federated; GroupNorm is the fix)",
)
_WIDTHS = (lambda v: len(v) >= 0 and all(h >= 1 for h in v), "a list of layer widths >= 1")


@register("model", "logreg")
@dataclass
class LogRegConfig:
    name: str = "logreg"


@register("model", "mlp")
@dataclass
class MLPConfig:
    name: str = "mlp"
    hidden: list[int] = option([200, 200], _WIDTHS)


@register("model", "cnn_mnist")
@register("model", "cnn_small")
@dataclass
class CNNConfig:
    name: str = "cnn_small"
    norm: str = option("none", _NORM)
    groups: int = option(8, integer(1))


@register_model("logreg")
def logreg(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Multinomial logistic regression: ``softmax(W x + b)`` on the flattened input."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


@register_model("mlp")
def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: Sequence[int] = (200, 200)) -> nn.Module:
    """Fully connected ReLU network. ``hidden=[200, 200]`` on 784 inputs is the "2NN" of
    McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from Decentralized
    Data" (199,210 parameters)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _norm(kind: str, channels: int, groups: int) -> list[nn.Module]:
    if kind == "none":
        return []
    if kind == "group":
        return [nn.GroupNorm(min(groups, channels), channels)]
    raise ValueError(f"model.norm={kind!r} is not allowed; use 'none' or 'group'")


def _conv_net(
    input_shape: tuple[int, ...],
    num_classes: int,
    channels: Sequence[int],
    kernel: int,
    fc: int,
    norm: str,
    groups: int,
) -> nn.Module:
    c, h, w = _image_shape(input_shape)
    layers: list[nn.Module] = []
    for out in channels:
        layers += [nn.Conv2d(c, out, kernel, padding=kernel // 2), *_norm(norm, out, groups), nn.ReLU()]
        layers.append(nn.MaxPool2d(2))
        c, h, w = out, h // 2, w // 2
    if h < 1 or w < 1:
        raise ValueError(f"input {tuple(input_shape)} is too small for {len(channels)} pooling stages")
    layers += [nn.Flatten(), nn.Linear(c * h * w, fc), nn.ReLU(), nn.Linear(fc, num_classes)]
    return nn.Sequential(*layers)


def _image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"a CNN needs (channels, height, width) inputs, got shape {tuple(input_shape)}")
    return int(input_shape[0]), int(input_shape[1]), int(input_shape[2])


@register_model("cnn_mnist")
def cnn_mnist(input_shape: tuple[int, ...], num_classes: int, norm: str = "none", groups: int = 8) -> nn.Module:
    """The CNN of McMahan et al. 2017: two 5x5 convolutions (32 and 64 channels), each followed by
    ReLU and 2x2 max pooling, a 512-unit ReLU layer and a linear output. On 1x28x28 inputs it has
    1,663,370 parameters, as in the paper."""
    return _conv_net(input_shape, num_classes, (32, 64), 5, 512, norm, groups)


@register_model("cnn_small")
def cnn_small(input_shape: tuple[int, ...], num_classes: int, norm: str = "none", groups: int = 8) -> nn.Module:
    """A small CNN for 8x8 inputs (scikit-learn digits): two 3x3 convolutions (32, 64 channels)
    with ReLU and 2x2 max pooling, a 128-unit ReLU layer and a linear output."""
    return _conv_net(input_shape, num_classes, (32, 64), 3, 128, norm, groups)
