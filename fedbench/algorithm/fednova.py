"""FedNova (Wang et al. 2020, "Tackling the Objective Inconsistency Problem in Heterogeneous
Federated Optimization"): normalised averaging.

Client ``i`` ran ``tau_i`` local steps; its update is a combination ``-eta G_i a_i`` of its
gradients with weights ``a_i``. FedNova divides each update by ``||a_i||_1`` and rescales the
weighted mean by ``tau_eff = sum_i p_i ||a_i||_1`` (``p_i`` the clients' sample shares):

    Delta = tau_eff * sum_i p_i (y_i - x) / ||a_i||_1

For plain local SGD ``a_i = (1, ..., 1)`` and ``||a_i||_1 = tau_i``; with local momentum ``rho``
(Section 5 of the paper) ``||a_i||_1 = [tau_i - rho (1 - rho^tau_i) / (1 - rho)] / (1 - rho)``.
Weight decay is not counted in ``a_i``. With equal ``tau_i`` for every client, FedNova is FedAvg.
Each client uploads ``||a_i||_1`` (one fp32 number) besides its update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedbench.algorithm.base import Algorithm, LocalConfig
from fedbench.registry import register


def a_norm(tau: torch.Tensor, momentum: float) -> torch.Tensor:
    """``||a_i||_1`` for ``tau`` local steps of SGD with momentum ``rho``."""
    tau = tau.to(torch.float64)
    if not momentum:
        return tau
    rho = momentum
    return (tau - rho * (1 - rho**tau) / (1 - rho)) / (1 - rho)


class FedNova(Algorithm):
    def after_local(self, sim, record, w0):
        a = a_norm(torch.as_tensor(record.steps), self.cfg.momentum).to(w0.device, w0.dtype)
        record.updates = record.updates / a.clamp_min(1e-30).unsqueeze(1)
        record.payloads["a_norm"] = a.unsqueeze(1)
        return {}

    def server_step(self, sim, record, aggregate):
        p = record.weights / record.weights.sum().clamp_min(1e-30)  # all-empty round: aggregate is 0
        tau_eff = float((p * record.payloads["a_norm"].squeeze(1)).sum())
        return aggregate * tau_eff, {"fednova_tau_eff": tau_eff}


@register("algorithm", "fednova", impl=FedNova)
@dataclass
class FedNovaConfig(LocalConfig):
    name: str = "fednova"
