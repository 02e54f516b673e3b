"""Coordinate-wise rules: median, trimmed mean, mean around the median.

Each coordinate is handled on its own: the ``n`` values of a column are sorted (column chunks of
about ``CHUNK_ELEMENTS`` entries bound the sort's copy) and reduced. NaN sorts as ``+inf``, so a
non-finite row only ever sits at an end of a column, where these rules drop it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fedbench.aggregator._common import check_f, check_updates, column_chunks, finite_rows, nan_to_inf


def per_column(updates: torch.Tensor, reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``(d,)``: ``reduce`` applied to the column-sorted chunks ``(n, c)`` of ``updates``."""
    n, d = updates.shape
    clean = bool(finite_rows(updates).all())
    out = updates.new_empty(d)
    for cols in column_chunks(n, d):
        x = updates[:, cols]
        if not clean:
            x = nan_to_inf(x)
        out[cols] = reduce(x.sort(dim=0).values)
    return out


def sorted_median(s: torch.Tensor) -> torch.Tensor:
    """Median of each column of a column-sorted ``(n, c)``: the middle value, or the mean of the
    two middle values when ``n`` is even."""
    n = s.shape[0]
    if n % 2:
        return s[n // 2]
    return (s[n // 2 - 1] + s[n // 2]) * 0.5


def sorted_closest_mean(s: torch.Tensor, center: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the ``k`` values of each column closest to ``center`` (``(c,)``), for a
    column-sorted ``s``; a tie in distance goes to the smaller value.

    The ``k`` closest values are a window ``s[j : j + k]`` of the sorted column. Sliding the window
    right by one swaps ``s[j]`` for ``s[j + k]``, which is worth it iff ``center - s[j] >
    s[j + k] - center``; that test is monotone in ``j``, so the start is how often it holds.
    """
    n = s.shape[0]
    if k >= n:
        return s.mean(dim=0)
    start = ((center - s[: n - k]) > (s[k:] - center)).sum(dim=0)
    rows = start.unsqueeze(0) + torch.arange(k, device=s.device).unsqueeze(1)
    return s.gather(0, rows).mean(dim=0)


def median(updates: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median (Yin et al. 2018, "Byzantine-robust distributed learning: towards
    optimal statistical rates"): ``[agg]_k = median(u_1k, ..., u_nk)``, the mean of the two middle
    values when ``n`` is even (``torch.median`` would return the lower one)."""
    check_updates(updates, "median")
    return per_column(updates, sorted_median)


def trimmed_mean(updates: torch.Tensor, *, f: int) -> torch.Tensor:
    """Coordinate-wise trimmed mean (Yin et al. 2018): per coordinate, drop the ``f`` largest and
    the ``f`` smallest values and average the other ``n - 2f``:
    ``[agg]_k = (1 / (n - 2f)) sum_{j=f+1}^{n-f} u_(j)k`` with ``u_(1)k <= ... <= u_(n)k``.
    Needs ``n > 2f``."""
    n, _ = check_updates(updates, "trimmed_mean")
    check_f("trimmed_mean", n, f, n > 2 * f, "n > 2f")
    return per_column(updates, lambda s: s[f : n - f].mean(dim=0))


def meamed(updates: torch.Tensor, *, f: int) -> torch.Tensor:
    """Mean around the median (Xie, Koyejo & Gupta 2018, "Generalized Byzantine-tolerant SGD"):
    per coordinate, the mean of the ``n - f`` values closest to the coordinate's median (the
    median as in :func:`median`; a tie in distance goes to the smaller value, so the result does
    not depend on the row order). Needs ``n > 2f``, which keeps the median itself robust."""
    n, _ = check_updates(updates, "meamed")
    check_f("meamed", n, f, n > 2 * f, "n > 2f")
    return per_column(updates, lambda s: sorted_closest_mean(s, sorted_median(s), n - f))
