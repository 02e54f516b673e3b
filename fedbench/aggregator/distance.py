"""Pairwise squared distances from one Gram matrix, and the rules built on them: Krum, Multi-Krum
and Bulyan.

A non-finite row is at distance ``+inf`` from every other row (0 from itself), so it gets an
infinite Krum score and is never selected while enough finite rows remain.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
import torch

from fedbench.aggregator import _common
from fedbench.aggregator._common import check_f, check_updates, column_chunks, combine, finite_rows
from fedbench.aggregator.coordinate import sorted_closest_mean, sorted_median


class Geometry(NamedTuple):
    """What the distance-based rules share: ``(n, n)`` float64 squared distances, the ``(n,)``
    finite-row mask, and each finite row's squared distance to the finite rows' mean (``+inf``
    for a non-finite row)."""

    sq_dists: torch.Tensor
    finite: torch.Tensor
    sq_to_center: torch.Tensor


def centered_gram(x: torch.Tensor) -> torch.Tensor:
    """``(n, n)`` float64 Gram matrix of the rows of ``x`` minus their mean.

    Centring first makes the entries the size of the rows' spread instead of their norms, which
    limits the cancellation in ``|a|^2 + |b|^2 - 2ab`` (distances are shift-invariant, so the
    centre need not be exact). Each column chunk's product runs in the input dtype (a float32 GEMM
    is 3x faster than a float64 one) and the chunks are summed in float64, so rounding only
    accumulates over one chunk's columns. For float32 rows the distances are then good to about
    1e-7 of the rows' spread; rules break exact ties by the lower index, but a tie that is exact
    only on paper may fall either way.
    """
    n, d = x.shape
    center = x.mean(dim=0)
    gram = torch.zeros(n, n, dtype=torch.float64, device=x.device)
    for cols in column_chunks(n, d):
        c = x[:, cols] - center[cols]
        gram += (c @ c.T).to(torch.float64)
    return (gram + gram.T) * 0.5


def geometry(updates: torch.Tensor) -> Geometry:
    """Squared distances and the finite mask of a stack (see :class:`Geometry`)."""
    n = updates.shape[0]
    finite = finite_rows(updates)
    all_finite = bool(finite.all())
    x = updates if all_finite else updates[finite]
    sq = torch.full((n, n), math.inf, dtype=torch.float64, device=updates.device)
    to_center = torch.full((n,), math.inf, dtype=torch.float64, device=updates.device)
    if len(x):
        gram = centered_gram(x)
        norms = gram.diagonal()
        sub = (norms[:, None] + norms[None, :] - 2 * gram).clamp_min_(0)
        if all_finite:
            sq, to_center = sub, norms.clone()
        else:
            idx = finite.nonzero().flatten()
            sq[idx[:, None], idx[None, :]] = sub
            to_center[idx] = norms
    sq.fill_diagonal_(0.0)
    return Geometry(sq, finite, to_center)


def pairwise_sq_distances(updates: torch.Tensor) -> torch.Tensor:
    """``(n, n)`` float64 squared Euclidean distances ``D_ij = |u_i|^2 + |u_j|^2 - 2 u_i . u_j``
    from one Gram matrix of the centred rows (see :func:`centered_gram`), clamped at 0, with an
    exact zero diagonal and ``+inf`` between a non-finite row and any other row."""
    check_updates(updates, "pairwise_sq_distances")
    return geometry(updates).sq_dists


def mean_of_rows(updates: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The mean of the given rows, as one product with the stack instead of a gathered copy."""
    coef = torch.zeros(updates.shape[0], dtype=updates.dtype, device=updates.device)
    coef[rows] = 1.0 / len(rows)
    return combine(coef, updates)


def scores_from_sq(sq: torch.Tensor, f: int) -> torch.Tensor:
    """Krum scores from squared distances: for each row, the sum of its ``n - f - 2`` smallest
    distances to the other rows (``max(0, .)`` of them)."""
    n = sq.shape[0]
    k = max(n - f - 2, 0)
    if k == 0:
        return torch.zeros(n, dtype=sq.dtype, device=sq.device)
    others = sq.clone().fill_diagonal_(math.inf)
    return others.topk(k, dim=1, largest=False).values.sum(dim=1)


def _krum_check(rule: str, updates: torch.Tensor, f: int) -> int:
    n, _ = check_updates(updates, rule)
    check_f(rule, n, f, n > 2 * f + 2, "n > 2f + 2")
    return n


def krum_scores(updates: torch.Tensor, *, f: int) -> torch.Tensor:
    """``(n,)`` float64 Krum scores (Blanchard et al. 2017, "Machine learning with adversaries:
    Byzantine tolerant gradient descent"): ``s(i) = sum_{j in N_i} |u_i - u_j|^2`` where ``N_i``
    are the ``n - f - 2`` rows nearest to ``u_i`` other than itself. Needs ``n > 2f + 2``.

    (ByzFL averages the ``n - f - 1`` nearest instead; this follows the paper.)"""
    _krum_check("krum", updates, f)
    return scores_from_sq(geometry(updates).sq_dists, f)


def krum(updates: torch.Tensor, *, f: int) -> torch.Tensor:
    """Krum (Blanchard et al. 2017): the update with the smallest :func:`krum_scores`, the lowest
    index on a tie. Needs ``n > 2f + 2``."""
    return updates[int(krum_scores(updates, f=f).argmin())].clone()


def multikrum_select(updates: torch.Tensor, *, f: int, m: int | None = None) -> torch.Tensor:
    """LongTensor of the ``m`` rows with the lowest Krum scores (``m = n - f`` if None), in
    increasing score order, the lower index first on a tie. Needs ``n > 2f + 2`` and
    ``1 <= m <= n``."""
    n = _krum_check("multikrum", updates, f)
    m = n - f if m is None else m
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= n:
        raise ValueError(f"multikrum needs 1 <= m <= n, got m={m!r}, n={n}")
    scores = scores_from_sq(geometry(updates).sq_dists, f)
    return torch.sort(scores, stable=True).indices[:m]


def multikrum(updates: torch.Tensor, *, f: int, m: int | None = None) -> torch.Tensor:
    """Multi-Krum (Blanchard et al. 2017): ``(1/m) sum_{i in S} u_i`` over the ``m`` rows ``S`` with
    the lowest Krum scores (``m = n - f`` if None, as in ByzFL). Needs ``n > 2f + 2``."""
    return mean_of_rows(updates, multikrum_select(updates, f=f, m=m))


def bulyan_select(updates: torch.Tensor, *, f: int) -> torch.Tensor:
    """LongTensor of the ``theta = n - 2f`` rows Bulyan's first stage picks (El Mhamdi, Guerraoui &
    Rouault 2018, "The hidden vulnerability of distributed learning in Byzantium"), in the order
    picked: repeatedly apply Krum (with the same ``f``, over the ``r`` rows still in the pool, so
    ``r - f - 2`` neighbours, at least 0) to the pool and move the winner out of it. Distances are
    computed once. Needs ``n >= 4f + 3``."""
    n, _ = check_updates(updates, "bulyan")
    check_f("bulyan", n, f, n >= 4 * f + 3, "n >= 4f + 3")
    sq = geometry(updates).sq_dists
    pool = torch.arange(n, device=updates.device)
    picked = []
    for _ in range(n - 2 * f):
        scores = scores_from_sq(sq[pool[:, None], pool[None, :]], f)
        j = int(scores.argmin())
        picked.append(pool[j])
        pool = torch.cat([pool[:j], pool[j + 1 :]])
    return torch.stack(picked)


def bulyan(updates: torch.Tensor, *, f: int) -> torch.Tensor:
    """Bulyan over Krum (El Mhamdi et al. 2018): select ``theta = n - 2f`` rows with
    :func:`bulyan_select`, then per coordinate average the ``beta = theta - 2f`` selected values
    closest to the selected values' median (the mean of the two middle values for even ``theta``;
    a tie in distance goes to the smaller value). Needs ``n >= 4f + 3``."""
    chosen = bulyan_select(updates, f=f)
    theta = len(chosen)
    out = updates.new_empty(updates.shape[1])
    for cols in column_chunks(theta, updates.shape[1]):  # gathered chunk by chunk: no (theta, d) copy
        s = updates[chosen, cols].sort(dim=0).values
        out[cols] = sorted_closest_mean(s, sorted_median(s), theta - 2 * f)
    return out


# C(n, f) subsets is MDA's cost; beyond this many it is refused rather than left to run for hours.
MDA_MAX_SUBSETS = 1_000_000


def mda_select(updates: torch.Tensor, *, f: int) -> torch.Tensor:
    """LongTensor (ascending) of the ``n - f`` rows of minimum diameter (El Mhamdi, Guerraoui,
    Guirguis, Hoang & Rouault 2020, "Genuinely distributed Byzantine machine learning"):
    ``S* = argmin_{|S| = n - f} max_{i, j in S} |u_i - u_j|``, searched exhaustively over the
    ``C(n, f)`` subsets in ``itertools.combinations`` order, the first minimum winning (as ByzFL).
    Needs ``n > f`` and ``C(n, f) <= MDA_MAX_SUBSETS`` (1,000,000)."""
    n, _ = check_updates(updates, "mda")
    check_f("mda", n, f, n > f, "n > f")
    count = math.comb(n, f)
    if count > MDA_MAX_SUBSETS:
        raise ValueError(f"mda needs C(n, f) <= {MDA_MAX_SUBSETS:,} subsets, got C({n}, {f}) = {count:,}")
    sq = geometry(updates).sq_dists
    return _min_diameter_subset(sq, n - f)


def _min_diameter_subset(sq: torch.Tensor, k: int) -> torch.Tensor:
    n = sq.shape[0]
    combos = itertools.combinations(range(n), k)
    batch = max(1, 4 * _common.CHUNK_ELEMENTS // (k * k))  # subsets per step: a (batch, k, k) gather
    best, best_diam = None, math.inf
    while True:
        flat = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, batch)), dtype=np.int64)
        if flat.size == 0:
            break
        idx = torch.from_numpy(flat.reshape(-1, k)).to(sq.device)
        diam = sq[idx[:, :, None], idx[:, None, :]].amax(dim=(1, 2))
        j = int(diam.argmin())
        if best is None or float(diam[j]) < best_diam:
            best, best_diam = idx[j], float(diam[j])
    return best


def mda(updates: torch.Tensor, *, f: int) -> torch.Tensor:
    """Minimum-diameter averaging (El Mhamdi et al. 2020): the mean of the rows of
    :func:`mda_select`, ``(1 / (n - f)) sum_{i in S*} u_i``. Needs ``n > f``."""
    return mean_of_rows(updates, mda_select(updates, f=f))
