"""Server optimizers as optax-style ``init``/``update`` pairs over flat vectors.

The server treats the aggregated client update ``Delta`` (mean of ``w_k - w``) as a negative
pseudo-gradient (Reddi et al. 2021, "Adaptive Federated Optimization"); its state is explicit,
so a checkpoint is just that state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch


class ServerOpt(NamedTuple):
    init: Callable[[torch.Tensor], Any]
    update: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]


def server_sgd(lr: float = 1.0, momentum: float = 0.0) -> ServerOpt:
    """Server SGD with optional momentum.

    ``v <- momentum * v + Delta``;  ``w <- w + lr * v``. With ``lr=1, momentum=0`` this is plain
    FedAvg (McMahan et al. 2017); with ``momentum > 0`` it is FedAvgM (Hsu et al. 2019).
    ``update`` returns the step to add to the global model.
    """

    def init(params: torch.Tensor) -> Any:
        return torch.zeros_like(params) if momentum else None

    def update(delta: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        if momentum:
            state = state.mul(momentum).add_(delta)
            return lr * state, state
        return lr * delta, state

    return ServerOpt(init, update)
