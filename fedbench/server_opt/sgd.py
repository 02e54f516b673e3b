"""Server SGD: FedAvg's server (``lr=1, momentum=0``) and FedAvgM (Hsu et al. 2019, ``momentum > 0``).

v <- momentum * v + Delta;   w <- w + lr * v
"""

from __future__ import annotations

from dataclasses import dataclass

from fedbench.registry import number, option, register
from fedbench.server_opt.base import ServerOpt


def server_sgd(lr: float = 1.0, momentum: float = 0.0) -> ServerOpt:
    def init(params):
        return {"v": params.new_zeros(params.shape)} if momentum else None

    def update(delta, state):
        if momentum:
            v = state["v"].mul(momentum).add_(delta)
            return lr * v, {"v": v}, {}
        return lr * delta, state, {}

    return ServerOpt(init, update)


@register("server_opt", "sgd", impl=lambda cfg: server_sgd(cfg.lr, cfg.momentum))
@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = option(1.0, number(min=0, min_open=True))
    momentum: float = option(0.0, number(0, 1, max_open=True))
