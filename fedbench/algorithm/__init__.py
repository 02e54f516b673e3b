"""Federated algorithms: what clients run locally and how the server applies the aggregate."""

from fedbench.algorithm.server import ServerOpt, server_sgd

__all__ = ["ServerOpt", "server_sgd"]
