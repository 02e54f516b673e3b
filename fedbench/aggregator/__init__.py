"""Server-side aggregation of stacked client updates ``(n_clients, d) -> (d,)``."""

from fedbench.aggregator.mean import weighted_mean

__all__ = ["weighted_mean"]
