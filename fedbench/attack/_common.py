"""Input checks and small statistics shared by the attacks."""

from __future__ import annotations

import torch


def check(honest: torch.Tensor, f: int) -> None:
    """Raise ``ValueError`` unless ``honest`` is a 2-D float tensor with a row and ``f`` an int >= 1."""
    if not isinstance(honest, torch.Tensor):
        raise TypeError(f"honest must be a torch.Tensor, got {type(honest).__name__}")
    if honest.dim() != 2 or honest.shape[0] < 1:
        raise ValueError(f"honest must be 2-D (n_h, d) with n_h >= 1, got shape {tuple(honest.shape)}")
    if not honest.is_floating_point():
        raise ValueError(f"honest must have a floating dtype, got {honest.dtype}")
    if isinstance(f, bool) or not isinstance(f, int) or f < 1:
        raise ValueError(f"f must be an int >= 1, got {f!r}")


def work(honest: torch.Tensor) -> torch.Tensor:
    """``honest`` in at least float32: half-precision sums and variances lose too many digits."""
    return honest.float() if torch.finfo(honest.dtype).bits < 32 else honest


def std(x: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise sample std (``ddof=1``, as ``torch.std``, ByzFL and the papers' code); 0 for one row.

    With a single row the sample std is 0/0; the population value 0 is the only sensible answer
    (no spread to hide in), so a lone attacker sends its own update rather than NaN.
    """
    return x.std(dim=0, correction=1 if x.shape[0] > 1 else 0)


def rows(vector: torch.Tensor, f: int, like: torch.Tensor) -> torch.Tensor:
    """``f`` copies of ``vector`` as a fresh ``(f, d)`` tensor in ``like``'s dtype and device."""
    return vector.to(device=like.device, dtype=like.dtype).unsqueeze(0).repeat(f, 1)
