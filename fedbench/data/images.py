"""The image datasets papers compare on, read from the files torchvision's download leaves.

``dataset=mnist|fashion_mnist|emnist|cifar10|cifar100|svhn``, with ``dataset.root`` (default: the
environment variable ``FEDBENCH_DATA``, else ``~/.cache/fedbench/data``; the on-disk layouts and
how to download are in ``docs/datasets.md``). Images stay uint8 on the run's device; each batch is
scaled to [0, 1] and normalised per channel with the training set's mean and standard deviation
(computed when the dataset is loaded, so no constant is copied from elsewhere), in the one batch
function (:mod:`fedbench.data.batch`), which also applies the optional augmentation
(``crop_padding``, ``hflip``; off by default).

Files absent: a config error before any run starts, in one line naming the dataset, the path
looked at and the command that fetches the files (``python -m fedbench.data.download NAME``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fedbench.data.batch import BatchPrep
from fedbench.data.files import DatasetFileError, data_root, load_cifar, load_mnist_like, load_svhn, require_files
from fedbench.data.registry import Dataset, register_dataset
from fedbench.registry import integer, one_of, option, register


@dataclass
class _ImageConfig:
    root: str | None = None  # null: $FEDBENCH_DATA, else ~/.cache/fedbench/data
    crop_padding: int = option(0, integer(0, note=" (0: no random crop)"))
    hflip: bool = False

    def check(self, run: Any) -> str | None:
        """The files must be there before any run starts (one line saying how to get them)."""
        try:
            require_files(self.name, data_root(self.root), getattr(self, "split", None))
        except DatasetFileError as e:
            return f"dataset={self.name}: {e}"
        return None


@register("dataset", "mnist")
@dataclass
class MNISTConfig(_ImageConfig):
    name: str = "mnist"


@register("dataset", "fashion_mnist")
@dataclass
class FashionMNISTConfig(_ImageConfig):
    name: str = "fashion_mnist"


@register("dataset", "emnist")
@dataclass
class EMNISTConfig(_ImageConfig):
    name: str = "emnist"
    split: str = option("balanced", one_of("balanced", "byclass"))


@register("dataset", "cifar10")
@dataclass
class CIFAR10Config(_ImageConfig):
    name: str = "cifar10"


@register("dataset", "cifar100")
@dataclass
class CIFAR100Config(_ImageConfig):
    name: str = "cifar100"


@register("dataset", "svhn")
@dataclass
class SVHNConfig(_ImageConfig):
    name: str = "svhn"


def channel_stats(x_uint8: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation (population, ddof=0) of uint8 images
    ``(N, C, H, W)`` scaled to [0, 1], accumulated in float64."""
    c = x_uint8.shape[1]
    flat = x_uint8.transpose(0, 1).reshape(c, -1)
    s1 = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for chunk in flat.split(1 << 22, dim=1):
        v = chunk.to(torch.float64) / 255.0
        s1 += v.sum(1)
        s2 += (v * v).sum(1)
    n = flat.shape[1]
    mean = s1 / n
    std = (s2 / n - mean * mean).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _dataset(name: str, arrays: tuple, opts: dict) -> Dataset:
    x_train, y_train, x_test, y_test, num_classes = arrays
    x_train, x_test = torch.from_numpy(x_train), torch.from_numpy(x_test)
    mean, std = channel_stats(x_train)
    prep = BatchPrep(
        scale=1 / 255, mean=mean, std=std, crop_padding=int(opts.get("crop_padding", 0)), hflip=bool(opts.get("hflip"))
    )
    return Dataset(
        name, x_train, torch.from_numpy(y_train), x_test, torch.from_numpy(y_test), int(num_classes), prep=prep
    )


# dataset name -> reader of (x_train, y_train, x_test, y_test, num_classes) from the root and options
_READERS = {
    "mnist": lambda root, opts: load_mnist_like(root, "mnist"),
    "fashion_mnist": lambda root, opts: load_mnist_like(root, "fashion_mnist"),
    "emnist": lambda root, opts: load_mnist_like(root, "emnist", opts.get("split", "balanced")),
    "cifar10": lambda root, opts: load_cifar(root, "cifar10"),
    "cifar100": lambda root, opts: load_cifar(root, "cifar100"),
    "svhn": lambda root, opts: load_svhn(root),
}


def _loader(name: str):
    def load(opts: dict, seed: int) -> Dataset:
        return _dataset(name, _READERS[name](data_root(opts.get("root")), opts), opts)

    return load


for _name in _READERS:
    register_dataset(_name)(_loader(_name))
