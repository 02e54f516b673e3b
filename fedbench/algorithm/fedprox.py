"""FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks").

Client ``k`` minimises ``f_k(w) + mu/2 ||w - w_t||^2`` from the global model ``w_t``; its gradient
adds ``mu (w - w_t)``, the local rule's linear term with ``coef = mu`` and ``k_i = -mu w_t``. The
server is FedAvg's. ``mu = 0`` is FedAvg exactly (the term is left out of the step).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedbench.algorithm.base import Algorithm, LocalConfig
from fedbench.registry import number, option, register


class FedProx(Algorithm):
    def __init__(self, cfg: FedProxConfig):
        super().__init__(cfg)
        self.coef, self.constant = cfg.mu, cfg.mu > 0

    def local_constant(self, sim, record, w0):
        if not self.constant:
            return None
        return (-self.cfg.mu * w0).expand(record.n, -1)


@register("algorithm", "fedprox", impl=FedProx)
@dataclass
class FedProxConfig(LocalConfig):
    name: str = "fedprox"
    mu: float = option(0.01, number(min=0))
