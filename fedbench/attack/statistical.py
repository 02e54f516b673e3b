"""Attacks built from the honest updates' statistics: ALIE, IPM and Mimic."""

from __future__ import annotations

import math
from statistics import NormalDist

import torch

from fedbench.attack._common import check, rows, std, work


def alie_z(n: int, f: int) -> float:
    """ALIE's default factor ``z = Phi^-1((n - f - s) / (n - f))`` with ``s = floor(n/2 + 1) - f``.

    Baruch, Baruch and Goldberg, "A little is enough: circumventing defenses for distributed
    learning", NeurIPS 2019, Algorithm 1: ``s`` honest workers must be won over for a majority, and
    ``z`` is the largest shift (in stds) that still leaves that many honest values farther from the
    mean than the Byzantine one. ``n`` counts all workers, Byzantine included; ``alie_z(25, 5) ~
    0.2533``. Needs ``0 < (n - f - s) / (n - f) < 1``: ``n >= 3`` and ``f <= n / 2``.
    """
    for name, v in (("n", n), ("f", f)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} must be an int, got {v!r}")
    if f < 1 or n <= f:
        raise ValueError(f"alie_z needs 1 <= f < n, got n={n}, f={f}")
    s = math.floor(n / 2 + 1) - f
    p = (n - f - s) / (n - f)
    if not 0 < p < 1:
        raise ValueError(f"alie_z needs 0 < (n - f - s)/(n - f) < 1 (n >= 3, f <= n/2), got {p} for n={n}, f={f}")
    return NormalDist().inv_cdf(p)


def alie(honest: torch.Tensor, *, f: int, z: float | None = None, n: int | None = None) -> torch.Tensor:
    """A Little Is Enough: ``f`` copies of ``mean(honest) - z * std(honest)``, coordinate-wise.

    Baruch et al., NeurIPS 2019. ``std`` is the sample std (``ddof=1``) as in ByzFL's
    ``ALittleIsEnough`` (its docstring writes ``1/n`` but the code uses ``ddof=1``), Blades, the
    NDSS'21 authors' ``lie_attack`` and Karimireddy et al.'s code; 0 for a single honest row.
    ``z`` defaults to :func:`alie_z` ``(n, f)`` with ``n = n_h + f`` unless ``n`` is given (``n`` is
    ignored when ``z`` is). Sign: ``mean - z*std`` as in Karimireddy et al. (ICLR 2022) code;
    ByzFL, Blades and the NDSS'21 code send ``mean + z*std``, i.e. this function with ``-z``.
    """
    check(honest, f)
    if z is None:
        z = alie_z(honest.shape[0] + f if n is None else n, f)
    x = work(honest)
    return rows(x.mean(dim=0) - z * std(x), f, honest)


def ipm(honest: torch.Tensor, *, f: int, epsilon: float = 0.1) -> torch.Tensor:
    """Inner Product Manipulation: ``f`` copies of ``-epsilon * mean(honest)``.

    Xie, Koyejo and Gupta, "Fall of empires: breaking Byzantine-tolerant SGD by inner product
    manipulation", UAI 2019 (PMLR 115, 2020). ``epsilon = 0.1`` is the paper's small-epsilon setting
    (also Karimireddy et al.'s); ByzFL's ``InnerProductManipulation`` defaults to ``tau = 2``.
    """
    check(honest, f)
    return rows(-epsilon * work(honest).mean(dim=0), f, honest)


def mimic(honest: torch.Tensor, *, f: int, target: int = 0) -> torch.Tensor:
    """Mimic: every Byzantine row is a copy of honest row ``target``.

    Karimireddy, He and Jaggi, "Byzantine-robust learning on heterogeneous datasets via bucketing",
    ICLR 2022: over-representing one honest (non-iid) client biases robust aggregators without
    looking abnormal. A fixed index, as ByzFL's ``Mimic(epsilon=0)``; the paper's variant that
    learns the most informative worker over warm-up rounds is ByzFL's ``WorkerWithMaxVariance``
    optimizer, a stateful policy left to the caller (which chooses ``target``).
    """
    check(honest, f)
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < honest.shape[0]:
        raise ValueError(f"target must be an int in [0, {honest.shape[0]}), got {target!r}")
    return rows(honest[target], f, honest)
