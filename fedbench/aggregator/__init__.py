"""Server-side aggregation of stacked client updates ``(n_clients, d) -> (d,)``, and
pre-aggregation ``(n, d) -> (n', d)``.

Pure, batched torch functions: row ``i`` of ``updates`` is client ``i``'s update; options are
keyword-only; each docstring gives the rule's formula and paper. Robust rules raise ValueError
(naming the rule) when ``n`` is too small for ``f``, treat a row with a NaN or an infinity as
maximally distant (or give it zero influence), and return a finite result while at most ``f`` rows
are non-finite. ``mean``/``weighted_mean`` are the non-robust baseline and propagate them.
"""

from fedbench.aggregator._common import row_norms
from fedbench.aggregator.basic import mean, weighted_mean
from fedbench.aggregator.clipping import cclip, distances_to, norm_bound
from fedbench.aggregator.coordinate import meamed, median, trimmed_mean
from fedbench.aggregator.distance import (
    MDA_MAX_SUBSETS,
    bulyan,
    bulyan_select,
    krum,
    krum_scores,
    mda,
    mda_select,
    multikrum,
    multikrum_select,
    pairwise_sq_distances,
)
from fedbench.aggregator.geometric import GeomedResult, geomed, geomed_solve
from fedbench.aggregator.pre import arc, bucketing, clip, nnm
from fedbench.aggregator.spectral import dnc, dnc_select
from fedbench.aggregator.trust import fltrust, fltrust_scores

__all__ = [
    "MDA_MAX_SUBSETS",
    "GeomedResult",
    "arc",
    "bucketing",
    "bulyan",
    "bulyan_select",
    "cclip",
    "distances_to",
    "clip",
    "dnc",
    "dnc_select",
    "fltrust",
    "fltrust_scores",
    "geomed",
    "geomed_solve",
    "krum",
    "krum_scores",
    "mda",
    "mda_select",
    "meamed",
    "mean",
    "median",
    "multikrum",
    "multikrum_select",
    "nnm",
    "norm_bound",
    "pairwise_sq_distances",
    "row_norms",
    "trimmed_mean",
    "weighted_mean",
]
