"""``server_opt`` config group: how the server applies the aggregated update.

Options: ``sgd`` (FedAvg, FedAvgM), ``adam``, ``yogi``, ``adagrad`` (Reddi et al. 2021).
"""

from fedbench.server_opt.adaptive import AdaptiveConfig, server_adaptive
from fedbench.server_opt.base import ServerOpt
from fedbench.server_opt.sgd import SGDConfig, server_sgd

__all__ = ["AdaptiveConfig", "SGDConfig", "ServerOpt", "server_adaptive", "server_sgd"]
