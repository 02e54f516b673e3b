from __future__ import annotations

import math

import torch
from torch import nn


class FlatParams:
    """The layout of a model's parameters in one flat vector (``named_parameters`` order)."""

    def __init__(self, model: nn.Module):
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [tuple(p.shape) for _, p in model.named_parameters()]
        self.numels = [math.prod(s) for s in self.shapes]
        self.dim = sum(self.numels)

    def flatten(self, model: nn.Module) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``flat`` (shape ``(d,)``) as a ``{name: tensor}`` dict."""
        chunks = torch.split(flat, self.numels)
        return {n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes)}

    def unflatten_stacked(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fresh contiguous ``(n, *shape)`` copies of the columns of ``flat`` (shape ``(n, d)``).

        Always copies (``clone``, not ``contiguous``): with ``n == 1`` an expanded view already
        counts as contiguous, and training it in place would overwrite the global model.
        """
        n = flat.shape[0]
        chunks = torch.split(flat, self.numels, dim=1)
        return {name: c.reshape(n, *s).clone() for name, c, s in zip(self.names, chunks, self.shapes)}

    def flatten_stacked(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        n = next(iter(params.values())).shape[0]
        return torch.cat([params[name].reshape(n, -1) for name in self.names], dim=1)

    def bind(self, model: nn.Module, flat: torch.Tensor, flat_grad: torch.Tensor) -> None:
        """Make ``model``'s parameters and their gradients views into ``flat`` and ``flat_grad``."""
        for p, v, g in zip(model.parameters(), self.unflatten(flat).values(), self.unflatten(flat_grad).values()):
            p.data = v
            p.grad = g
