"""FedDyn (Acar et al. 2021, "Federated Learning Based on Dynamic Regularization"), Algorithm 1.

Client ``k`` keeps the gradient ``g_k = grad L_k(theta_k^{t-1})`` of its last local model
(zero until it first trains; per-client state) and minimises

    L_k(theta) - <g_k, theta> + alpha/2 ||theta - theta^{t-1}||^2,

whose gradient adds ``-g_k + alpha (theta - theta^{t-1})``: the local rule's ``coef = alpha`` and
``k_i = -g_k - alpha theta^{t-1}``. Afterwards ``g_k <- g_k - alpha (theta_k^t - theta^{t-1})``.
The server keeps ``h`` (zero at the start) over the ``m`` registered clients and the round's
participants ``P``:

    h <- h - alpha (1/m) sum_{k in P} (theta_k^t - theta^{t-1})
    theta^t = (1/|P|) sum_{k in P} theta_k^t - h / alpha

so the mean over participants is unweighted, as in the paper, and the global step handed to the
server optimizer is ``mean_P(delta_k) - h / alpha`` (use ``server_opt=sgd`` with ``lr=1`` for the
paper's algorithm).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedbench.algorithm.base import Algorithm, LocalConfig
from fedbench.registry import number, option, register


class FedDyn(Algorithm):
    constant = True

    def __init__(self, cfg: FedDynConfig):
        super().__init__(cfg)
        self.coef = cfg.alpha

    def init(self, sim):
        self.state["h"] = torch.zeros(sim.layout.dim, device=sim.device)

    def local_constant(self, sim, record, w0):
        return -self.rows(sim, record, "grad") - self.cfg.alpha * w0

    def after_local(self, sim, record, w0):
        self.set_rows(sim, record, "grad", self.rows(sim, record, "grad") - self.cfg.alpha * record.updates)
        record.weights = torch.ones(record.n, dtype=w0.dtype, device=w0.device)
        return {}

    def server_step(self, sim, record, aggregate):
        alpha = self.cfg.alpha
        self.state["h"] = self.state["h"] - alpha * record.updates.sum(0) / sim.run.num_clients
        return aggregate - self.state["h"] / alpha, {}


@register("algorithm", "feddyn", impl=FedDyn)
@dataclass
class FedDynConfig(LocalConfig):
    name: str = "feddyn"
    alpha: float = option(0.01, number(min=0, min_open=True))
