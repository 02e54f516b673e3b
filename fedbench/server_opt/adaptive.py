"""FedAdagrad, FedYogi and FedAdam (Reddi et al. 2021, "Adaptive Federated Optimization",
Algorithm 2), on the aggregated update ``Delta_t`` as negative pseudo-gradient:

    m_t = beta1 m_{t-1} + (1 - beta1) Delta_t
    v_t = v_{t-1} + Delta_t^2                                          (adagrad)
    v_t = v_{t-1} - (1 - beta2) Delta_t^2 sign(v_{t-1} - Delta_t^2)     (yogi)
    v_t = beta2 v_{t-1} + (1 - beta2) Delta_t^2                         (adam)
    w_{t+1} = w_t + lr * m_t / (sqrt(v_t) + tau)

with ``m_{-1} = 0`` and ``v_{-1} = tau^2`` (the paper requires ``v_{-1} >= tau^2``), no bias
correction; ``tau`` controls the adaptivity. All elementwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedbench.registry import number, option, register
from fedbench.server_opt.base import ServerOpt


def server_adaptive(kind: str, lr: float, beta1: float, beta2: float, tau: float) -> ServerOpt:
    if kind not in ("adagrad", "yogi", "adam"):
        raise ValueError(f"unknown adaptive server optimizer {kind!r}")

    def init(params):
        return {"m": torch.zeros_like(params), "v": torch.full_like(params, tau**2)}

    def update(delta, state):
        m = beta1 * state["m"] + (1 - beta1) * delta
        sq = delta * delta
        v = state["v"]
        if kind == "adagrad":
            v = v + sq
        elif kind == "yogi":
            v = v - (1 - beta2) * sq * torch.sign(v - sq)
        else:
            v = beta2 * v + (1 - beta2) * sq
        return lr * m / (v.sqrt() + tau), {"m": m, "v": v}, {}

    return ServerOpt(init, update)


@dataclass
class AdaptiveConfig:
    name: str = "adam"
    lr: float = option(0.01, number(min=0, min_open=True))
    beta1: float = option(0.9, number(0, 1, max_open=True))
    beta2: float = option(0.99, number(0, 1, max_open=True))
    tau: float = option(1e-3, number(min=0, min_open=True))


def _build(cfg: AdaptiveConfig) -> ServerOpt:
    return server_adaptive(cfg.name, cfg.lr, cfg.beta1, cfg.beta2, cfg.tau)


for _kind in ("adam", "yogi", "adagrad"):
    register("server_opt", _kind, impl=_build)(AdaptiveConfig)
