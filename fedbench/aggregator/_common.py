"""Helpers shared by the aggregation rules: argument checks, column chunking, non-finite rows."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

# Elements per column chunk of an (n, d) stack: sorts and Gram products run on n x (CHUNK // n)
# blocks, which bounds the temporaries (a sort copies its input) and keeps them in cache.
CHUNK_ELEMENTS = 1 << 20


def check_updates(updates: torch.Tensor, rule: str) -> tuple[int, int]:
    """``(n, d)`` of a non-empty floating ``(n, d)`` stack, or a ValueError naming the rule."""
    if not isinstance(updates, torch.Tensor) or updates.dim() != 2 or not updates.is_floating_point():
        shape = tuple(updates.shape) if isinstance(updates, torch.Tensor) else type(updates).__name__
        raise ValueError(f"{rule} needs a floating (n, d) tensor of updates, got {shape}")
    n, d = updates.shape
    if n < 1:
        raise ValueError(f"{rule} needs at least one update, got n=0")
    return n, d


def check_f(rule: str, n: int, f: int, ok: bool, need: str) -> None:
    """Raise ``"<rule> needs <need>, got n=.., f=.."`` unless ``f`` is a non-negative int and ``ok``."""
    if isinstance(f, bool) or not isinstance(f, int) or f < 0:
        raise ValueError(f"{rule} needs an integer f >= 0, got f={f!r}")
    if not ok:
        raise ValueError(f"{rule} needs {need}, got n={n}, f={f}")


def check_positive(rule: str, name: str, value: float) -> None:
    if not (isinstance(value, int | float) and value > 0 and not math.isnan(value)):
        raise ValueError(f"{rule} needs {name} > 0, got {name}={value!r}")


def column_chunks(n: int, d: int) -> Iterator[slice]:
    step = max(1, CHUNK_ELEMENTS // max(n, 1))
    for a in range(0, d, step):
        yield slice(a, min(a + step, d))


def finite_rows(updates: torch.Tensor) -> torch.Tensor:
    """``(n,)`` bool: rows without a NaN or an infinity."""
    # A NaN or an infinity makes the row's sum non-finite, so one cheap reduction clears the
    # usual all-finite case; only rows whose sum is not finite (an overflow of finite values is
    # possible) are checked entry by entry.
    ok = torch.isfinite(updates.sum(dim=1))
    if bool(ok.all()):
        return ok
    suspect = (~ok).nonzero().flatten()
    ok[suspect] = torch.isfinite(updates[suspect]).all(dim=1)
    return ok


def nan_to_inf(x: torch.Tensor) -> torch.Tensor:
    """NaN -> +inf, so that NaNs sort to the top end like +inf (coordinate-wise rules)."""
    return torch.where(torch.isnan(x), torch.full_like(x, math.inf), x)


def row_norms(updates: torch.Tensor, finite: torch.Tensor | None = None) -> torch.Tensor:
    """``(n,)`` float64 Euclidean norms, +inf for non-finite rows."""
    if finite is None:
        finite = finite_rows(updates)
    # in the input dtype (a float64 reduction of float32 rows is 20x slower); a finite row whose
    # float32 norm overflows is redone in float64
    norms = torch.linalg.vector_norm(updates, dim=1).to(torch.float64)
    redo = (finite & torch.isinf(norms)).nonzero().flatten()
    if len(redo):
        norms[redo] = torch.linalg.vector_norm(updates[redo].to(torch.float64), dim=1)
    return torch.where(finite, norms, math.inf)


def combine(coef: torch.Tensor, updates: torch.Tensor, finite: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_i coef_i u_i`` in the updates' dtype, where rows with a zero coefficient or a
    non-finite entry contribute nothing (a plain ``coef @ updates`` would give ``0 * inf = NaN``)."""
    coef = coef.to(updates.dtype)
    if finite is None:
        finite = finite_rows(updates)
    if bool(finite.all()):
        return coef @ updates
    keep = (finite & (coef != 0)).nonzero().flatten()
    if len(keep) == 0:
        return updates.new_zeros(updates.shape[1])
    return coef[keep] @ updates[keep]
