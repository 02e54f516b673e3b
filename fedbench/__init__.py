"""fedbench: single-process simulation and benchmarking of federated training."""

__version__ = "0.1.0"
