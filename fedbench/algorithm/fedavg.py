"""FedAvg (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from
Decentralized Data"): clients run local SGD from the global model; the server averages their
updates weighted by sample count, ``Delta = sum_k n_k (w_k - w) / sum_k n_k``."""

from __future__ import annotations

from dataclasses import dataclass

from fedbench.algorithm.base import Algorithm, LocalConfig
from fedbench.registry import register


@register("algorithm", "fedavg", impl=Algorithm)
@dataclass
class FedAvgConfig(LocalConfig):
    name: str = "fedavg"
