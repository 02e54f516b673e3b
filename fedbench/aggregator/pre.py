"""Pre-aggregation: transforms of the stack ``(n, d) -> (n', d)`` applied before a rule.

A row with a non-finite entry gets zero influence in ``clip``, ``arc`` and ``nnm`` (it becomes a
zero row, or is nobody's neighbour); ``bucketing`` only averages, so such a row spoils its own
bucket and no other.
"""

from __future__ import annotations

import math

import torch

from fedbench.aggregator._common import check_f, check_positive, check_updates, finite_rows, row_norms
from fedbench.aggregator.clipping import clip_scale
from fedbench.aggregator.distance import geometry


def _scaled(updates: torch.Tensor, scale: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    out = updates * scale.to(updates.dtype).unsqueeze(1)
    if not bool(finite.all()):
        out[~finite] = 0  # 0 * inf is NaN, so the scale alone cannot zero them
    return out


def bucketing(updates: torch.Tensor, *, s: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bucketing (Karimireddy, He & Jaggi 2022, "Byzantine-robust learning on heterogeneous
    datasets via bucketing"): shuffle the rows with a random permutation ``pi`` (from
    ``generator``) and average consecutive groups of ``s``,

        b_j = mean{u_pi(i) : (j - 1) s < i <= j s},  j = 1 .. ceil(n / s),

    the last bucket holding the ``n mod s`` leftover rows if any (as ByzFL)."""
    n, d = check_updates(updates, "bucketing")
    if isinstance(s, bool) or not isinstance(s, int) or s < 1:
        raise ValueError(f"bucketing needs an integer s >= 1, got s={s!r}")
    perm = torch.randperm(n, generator=generator, device=updates.device)
    bucket = torch.empty(n, dtype=torch.long, device=updates.device)
    bucket[perm] = torch.arange(n, device=updates.device) // s
    count = math.ceil(n / s)
    # index_add_ sums each row into its bucket only, so a NaN row cannot reach other buckets (an
    # averaging matrix product would: 0 * NaN = NaN).
    out = updates.new_zeros(count, d).index_add_(0, bucket, updates)
    sizes = torch.bincount(bucket, minlength=count).to(updates.dtype)
    return out / sizes.unsqueeze(1)


def nnm(updates: torch.Tensor, *, f: int) -> torch.Tensor:
    """Nearest-neighbour mixing (Allouah et al. 2023, "Fixing by mixing: a recipe for optimal
    Byzantine ML under heterogeneity"): each row replaced by the mean of its ``n - f`` nearest rows,
    itself included: ``y_i = (1 / (n - f)) sum_{j in N_i} u_j``. Ties go to the lower index.

    A non-finite row is nobody's neighbour; its own output is the mean of the ``n - f`` finite rows
    nearest to the finite rows' mean. Needs ``n > f``.
    """
    n, _ = check_updates(updates, "nnm")
    check_f("nnm", n, f, n > f, "n > f")
    g = geometry(updates)
    key = g.sq_dists.clone()
    key.fill_diagonal_(-1.0)  # itself first, even next to an exact duplicate
    bad = ~g.finite
    if bool(bad.any()):
        key[:, bad] = math.inf
        key[bad] = torch.where(g.finite, g.sq_to_center, math.inf).expand(int(bad.sum()), n)
    neighbours = torch.sort(key, dim=1, stable=True).indices[:, : n - f]
    mix = torch.zeros(n, n, dtype=updates.dtype, device=updates.device)
    mix.scatter_(1, neighbours, 1.0 / (n - f))
    if bool(bad.any()):
        updates = updates.clone()
        updates[bad] = 0  # weight 0 there, but 0 * NaN would still be NaN in the product
    return mix @ updates


def clip(updates: torch.Tensor, *, tau: float) -> torch.Tensor:
    """Static clipping: every row scaled to norm at most ``tau``, ``u_i * min(1, tau / |u_i|)``.
    A non-finite row becomes zeros."""
    check_updates(updates, "clip")
    check_positive("clip", "tau", tau)
    finite = finite_rows(updates)
    return _scaled(updates, clip_scale(row_norms(updates, finite), tau), finite)


def arc(updates: torch.Tensor, *, f: int) -> torch.Tensor:
    """Adaptive robust clipping (Allouah, Guerraoui, Gupta, Jellouli, Rizk & Stephan 2024, "The
    vital role of gradient clipping in Byzantine-resilient distributed learning"): with
    ``k = floor(2 f (n - f) / n)`` (ByzFL's formula, in exact integer arithmetic), clip the ``k``
    rows of largest norm to the largest norm among the other ``n - k`` rows,
    ``u_i * min(1, |u_(n-k)| / |u_i|)`` where ``|u_(1)| <= ... <= |u_(n)|``. A non-finite row (norm
    ``+inf``) becomes zeros. Needs ``n > f``.
    """
    n, _ = check_updates(updates, "arc")
    check_f("arc", n, f, n > f, "n > f")
    finite = finite_rows(updates)
    norms = row_norms(updates, finite)
    k = 2 * f * (n - f) // n
    scale = torch.ones_like(norms)
    if k > 0:
        order = torch.sort(norms, stable=True).indices
        threshold = float(norms[order[n - k - 1]])
        largest = order[n - k :]
        scale[largest] = clip_scale(norms[largest], threshold)
    return _scaled(updates, scale, finite)
