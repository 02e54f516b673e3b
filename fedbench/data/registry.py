from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Dataset:
    """A classification dataset held as tensors.

    ``x_*`` are float32 of shape ``(n, *input_shape)``; ``y_*`` are int64 class ids in
    ``[0, num_classes)``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(
            self.name,
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_test.to(device),
            self.y_test.to(device),
            self.num_classes,
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
