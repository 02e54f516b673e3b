"""Synthetic Gaussian-mixture classification data of any input shape.

Class ``c`` has a mean ``mu_c ~ N(0, I)`` (drawn once from the ``data`` stream); a sample of
class ``c`` is ``mu_c + noise * N(0, I)``; labels are uniform. With ``input_shape: [1, 28, 28]``
and 60,000 training samples it is MNIST-shaped, which the performance benchmarks use: it costs
no download and exercises exactly the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedbench.data.registry import Dataset, register_dataset
from fedbench.registry import integer, number, option, register
from fedbench.rng import torch_generator

_SHAPE = (lambda v: len(v) >= 1 and all(s >= 1 for s in v), "a non-empty list of sizes >= 1")


@register("dataset", "synthetic")
@dataclass
class SyntheticConfig:
    name: str = "synthetic"
    input_shape: list[int] = option([1, 28, 28], _SHAPE)
    num_classes: int = option(10, integer(2))
    num_train: int = option(60000, integer(1))
    num_test: int = option(10000, integer(1))
    noise: float = option(1.0, number(min=0))


@register_dataset("synthetic")
def load_synthetic(opts: dict, seed: int) -> Dataset:
    shape = tuple(int(s) for s in opts.get("input_shape", (1, 28, 28)))
    k = int(opts.get("num_classes", 10))
    n_train, n_test = int(opts.get("num_train", 60000)), int(opts.get("num_test", 10000))
    noise = float(opts.get("noise", 1.0))
    g = torch_generator(seed, "data")
    means = torch.randn((k, *shape), generator=g)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, k, (n,), generator=g)
        x = means[y] + noise * torch.randn((n, *shape), generator=g)
        return x, y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset("synthetic", x_train, y_train, x_test, y_test, k)
