from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fedbench.rng import torch_seed

Builder = Callable[..., nn.Module]
MODELS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Register ``fn(input_shape, num_classes, **options) -> nn.Module`` under ``name``."""

    def wrap(fn: Builder) -> Builder:
        MODELS[name] = fn
        return fn

    return wrap


def build_model(
    cfg: dict[str, Any], input_shape: tuple[int, ...], num_classes: int, seed: int | None = None
) -> nn.Module:
    """Build the model ``cfg['name']``; with ``seed``, its initial weights come from the ``init`` stream."""
    opts = dict(cfg)
    name = opts.pop("name")
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    if seed is None:
        return MODELS[name](tuple(input_shape), int(num_classes), **opts)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed(seed, "init"))
        return MODELS[name](tuple(input_shape), int(num_classes), **opts)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
