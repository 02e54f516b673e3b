"""CIFAR ResNets with GroupNorm (no BatchNorm, so no buffers: every engine trains them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fedbench.models.registry import register_model
from fedbench.models.zoo import _image_shape
from fedbench.registry import integer, option, register


@register("model", "resnet18")
@register("model", "resnet8")
@dataclass
class ResNetConfig:
    name: str = "resnet8"
    # GroupNorm groups in every norm layer; 2 as in Reddi et al. 2021's GroupNorm ResNets (docs/models.md)
    groups: int = option(2, integer(1, note=" that divides every stage's channel count"))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm, ReLU between, added to the input (through a 1x1
    convolution with GroupNorm where the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(groups, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: a 3x3 stride-1 convolution with GroupNorm and ReLU (no max pooling),
    stages of :class:`BasicBlock` (the first block of every stage but the first has stride 2),
    global average pooling and a linear output."""

    def __init__(self, in_channels: int, num_classes: int, widths: Sequence[int], blocks: Sequence[int], groups: int):
        super().__init__()
        bad = [w for w in widths if w % groups]
        if bad:
            raise ValueError(f"groups={groups} must divide every stage's channel count {tuple(widths)}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.GroupNorm(groups, widths[0]), nn.ReLU()
        )
        stages, cin = [], widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks)):
            stage = [BasicBlock(cin, width, 1 if i == 0 else 2, groups)]
            stage += [BasicBlock(width, width, 1, groups) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init, as torchvision and both reference implementations
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(x.mean((-2, -1)))


@register_model("resnet8")
def resnet8(input_shape: tuple[int, ...], num_classes: int, groups: int = 2) -> nn.Module:
    """ResNet-8 as in Lin et al. 2020 (FedDF, "Ensemble Distillation for Robust Model Fusion in
    Federated Learning"; their ``ResNet_cifar`` of depth 6n+2 with n=1): three stages of one
    :class:`BasicBlock` each, 16, 32 and 64 channels. 78,042 parameters with 10 classes."""
    c, _, _ = _image_shape(input_shape)
    return ResNet(c, num_classes, (16, 32, 64), (1, 1, 1), groups)


@register_model("resnet18")
def resnet18(input_shape: tuple[int, ...], num_classes: int, groups: int = 2) -> nn.Module:
    """ResNet-18 for 32x32 inputs (He et al. 2016; the CIFAR variant of NIID-Bench's
    ``ResNet18_cifar10`` and of kuangliu/pytorch-cifar): four stages of two :class:`BasicBlock`
    each, 64, 128, 256 and 512 channels. 11,173,962 parameters with 10 classes, the same as with
    BatchNorm (GroupNorm has the same per-channel scale and shift)."""
    c, _, _ = _image_shape(input_shape)
    return ResNet(c, num_classes, (64, 128, 256, 512), (2, 2, 2, 2), groups)
