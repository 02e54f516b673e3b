from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from fedbench.data.batch import BatchPrep


@dataclass
class Dataset:
    """A classification dataset held as tensors, as stored.

    ``x_*`` have shape ``(n, *input_shape)``: uint8 images (``prep`` scales and normalises them
    per batch), float32 features, or int64 token ids; ``y_*`` are int64 class ids in
    ``[0, num_classes)``. ``prep`` (:class:`~fedbench.data.batch.BatchPrep`) turns a gathered
    batch into model inputs, for training (with augmentation) and evaluation alike.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    prep: BatchPrep = field(default_factory=BatchPrep)
    groups: np.ndarray | None = None  # natural client (device, writer) of every training sample

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> Dataset:
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )


Loader = Callable[[dict[str, Any], int], Dataset]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def wrap(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn

    return wrap


def load_dataset(cfg: dict[str, Any], seed: int, device: torch.device | str = "cpu") -> Dataset:
    """Load the dataset named ``cfg['name']`` with the remaining keys as options."""
    opts = dict(cfg)
    name = opts.pop("name")
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; registered: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](opts, seed).to(device)
