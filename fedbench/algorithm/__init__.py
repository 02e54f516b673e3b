"""``algorithm`` config group: what clients do locally and the server's algorithm-specific step.

Options (one module each): ``fedavg``, ``fedprox``, ``scaffold``, ``feddyn``, ``fednova``. Each
registers its config dataclass with the class that implements its hooks
(:class:`~fedbench.algorithm.base.Algorithm`).
"""

from fedbench.algorithm.base import Algorithm, LocalConfig
from fedbench.algorithm.fedavg import FedAvgConfig
from fedbench.algorithm.feddyn import FedDyn, FedDynConfig
from fedbench.algorithm.fednova import FedNova, FedNovaConfig, a_norm
from fedbench.algorithm.fedprox import FedProx, FedProxConfig
from fedbench.algorithm.scaffold import Scaffold, ScaffoldConfig

__all__ = [
    "Algorithm",
    "FedAvgConfig",
    "FedDyn",
    "FedDynConfig",
    "FedNova",
    "FedNovaConfig",
    "FedProx",
    "FedProxConfig",
    "LocalConfig",
    "Scaffold",
    "ScaffoldConfig",
    "a_norm",
]
