"""SCAFFOLD (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning"), Algorithm 1 with option II.

The server holds a control variate ``c``, each client its own ``c_i`` (zero until it first
trains; kept in the per-client state store while it sits out). Both are sent with the model:
the downlink carries ``x`` and ``c``. Each local step corrects the gradient by ``c - c_i`` (the
local rule's constant term). After ``K`` local steps of size ``eta_l`` ending at ``y_i``:

    c_i+ = c_i - c + (x - y_i) / (K eta_l)          (option II)
    uploads  delta y_i = y_i - x  and  delta c_i = c_i+ - c_i    (twice FedAvg's uplink)

and the server applies ``x <- x + eta_g * mean(delta y_i)`` (``eta_g`` is ``server_opt.lr``; the
mean is sample-weighted like FedAvg's, so SCAFFOLD with zero controls is FedAvg) and
``c <- c + (|S|/N) * mean_S(delta c_i) = c + (1/N) sum_S delta c_i``. ``K`` is each client's own
number of local steps; a client with no data (``K = 0``) keeps its control.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedbench.algorithm.base import Algorithm, LocalConfig
from fedbench.registry import register


class Scaffold(Algorithm):
    constant = True

    def init(self, sim):
        self.state["c"] = torch.zeros(sim.layout.dim, device=sim.device)

    def broadcast_payloads(self, sim):
        return {"c": self.state["c"]}

    def local_constant(self, sim, record, w0):
        return self.state["c"] - self.rows(sim, record, "c_i")

    def after_local(self, sim, record, w0):
        c_i = self.rows(sim, record, "c_i")
        k_eta = torch.as_tensor(record.steps, dtype=w0.dtype, device=w0.device) * self.cfg.lr
        trained = (k_eta > 0).unsqueeze(1)
        delta_c = torch.where(trained, -self.state["c"] - record.updates / k_eta.clamp_min(1e-30).unsqueeze(1), 0.0)
        self.set_rows(sim, record, "c_i", c_i + delta_c)
        record.payloads["delta_c"] = delta_c
        return {}

    def server_step(self, sim, record, aggregate):
        self.state["c"] = self.state["c"] + record.payloads["delta_c"].sum(0) / sim.run.num_clients
        return aggregate, {}


@register("algorithm", "scaffold", impl=Scaffold)
@dataclass
class ScaffoldConfig(LocalConfig):
    name: str = "scaffold"
