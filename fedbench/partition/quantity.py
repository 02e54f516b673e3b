"""Quantity skew: label-IID clients of unequal sizes.

Every client's data is a uniformly random sample of the training set (so its label mix is the global
one, up to sampling noise); only the client sizes differ, drawn from one of three laws. ``law=dirichlet``
is NIID-Bench's ``iid-diff-quantity`` (Li, Diao, Chen & He 2022, "Federated Learning on Non-IID Data
Silos: An Experimental Study", Sec. IV-C; github.com/Xtra-Computing/NIID-Bench, ``utils.py``,
``partition_data``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedbench.registry import integer, number, one_of, option, register

from .base import PartitionError, as_parts, check_int, check_labels, check_min_size, check_real, cut_sizes
from .feature import FeatureSkewOptions

LAWS = ("dirichlet", "lognormal", "powerlaw")
_BATCH = 1024  # Dirichlet redraws are drawn this many at a time


@dataclass
class SizeLawOptions(FeatureSkewOptions):
    """The keys of the client-size laws (:func:`draw_sizes`), shared by ``quantity`` and
    ``dirichlet_client``'s ``sizes``."""

    beta: float = option(0.5, number(min=0, min_open=True))
    sigma: float = option(1.0, number(min=0))
    exponent: float = option(1.5, number(min=0, min_open=True))
    min_size: int = option(10, integer(0))
    max_attempts: int = option(100_000, integer(1))


@register("partition", "quantity")
@dataclass
class QuantityConfig(SizeLawOptions):
    name: str = "quantity"
    law: str = option("dirichlet", one_of(*LAWS))


def _softmax(logw: np.ndarray) -> np.ndarray:
    w = np.exp(logw - logw.max())
    return w / w.sum()


def _dirichlet_sizes(
    n: int, num_clients: int, beta: float, min_size: int, max_attempts: int, rng: np.random.Generator, key: tuple
) -> np.ndarray:
    """NIID-Bench's redraw loop, in batches: the first row ``q ~ Dir(beta * 1_N)`` with ``min(q) * n >= min_size``."""
    tried = 0
    best = -1
    while tried < max_attempts:
        b = min(_BATCH, max_attempts - tried)
        q = rng.dirichlet(np.full(num_clients, beta), size=b)
        bad = ~(np.isfinite(q).all(axis=1) & (q.sum(axis=1) > 0))
        if bad.any():  # underflow at tiny beta: the beta -> 0 limit, all mass on one uniformly chosen client
            q[bad] = 0.0
            q[np.flatnonzero(bad), rng.integers(num_clients, size=int(bad.sum()))] = 1.0
        q /= q.sum(axis=1, keepdims=True)
        sizes = cut_sizes(q, n)
        # NIID-Bench accepts on min(q * n) >= min_size; that implies integer sizes >= min_size (each part is
        # > q_j * n - 1), checked as well so that float rounding can never let a smaller client through.
        smallest = np.minimum((q * n).min(axis=1), sizes.min(axis=1))  # what acceptance compares
        ok = smallest >= min_size
        if ok.any():
            return sizes[int(np.argmax(ok))]
        best = max(best, int(np.floor(smallest.max())))  # the best row's, below min_size
        tried += b
    who, key = key
    raise PartitionError(
        f"{who} with {key}=dirichlet found no sizes with every client >= min_size={min_size} samples in "
        f"{max_attempts} draws (beta={beta:g}, num_clients={num_clients}, {n} samples; best draw's smallest "
        f"client had {best}); use a larger beta, fewer clients, a smaller min_size, or {key}=lognormal or "
        f"{key}=powerlaw (which guarantee min_size without redraws)"
    )


def draw_sizes(
    law: str,
    total: int,
    num_clients: int,
    rng: np.random.Generator,
    beta: float,
    sigma: float,
    exponent: float,
    min_size: int,
    max_attempts: int,
    key: tuple[str, str] = ("quantity", "law"),
) -> np.ndarray:
    """Client sizes summing to ``total`` by ``law`` (see :func:`quantity`); arguments already checked,
    ``num_clients * min_size <= total``. ``key`` (option, key) names the law in the redraw error."""
    if law == "dirichlet":
        return _dirichlet_sizes(total, num_clients, beta, min_size, max_attempts, rng, key)
    if law == "lognormal":
        logw = sigma * rng.standard_normal(num_clients)
    else:
        logw = rng.standard_exponential(num_clients) / exponent
    return min_size + cut_sizes(_softmax(logw), total - num_clients * min_size)


def check_law(key: str, law: str, laws: tuple[str, ...], beta, sigma, exponent, min_size, max_attempts) -> tuple:
    """The size law's arguments checked (:class:`PartitionError` naming ``key`` for a bad law)."""
    if law not in laws:
        raise PartitionError(f"{key} must be one of {', '.join(laws)}, got {law!r}")
    return (
        check_real("beta", beta, 0.0, True, "; small beta (e.g. 0.1) gives very unequal sizes"),
        check_real("sigma", sigma, 0.0, False),
        check_real("exponent", exponent, 0.0, True),
        check_int("min_size", min_size, 0),
        check_int("max_attempts", max_attempts, 1),
    )


def quantity(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    law: str = "dirichlet",
    beta: float = 0.5,
    sigma: float = 1.0,
    exponent: float = 1.5,
    min_size: int = 10,
    max_attempts: int = 100_000,
) -> list[np.ndarray]:
    """Label-IID partition with client sizes drawn from ``law``; every sample is used.

    Definition, with ``n = len(labels)`` and ``N = num_clients``:

    1. ``pi = rng.permutation(n)``;
    2. sizes ``s_0 .. s_{N-1}`` (summing to ``n``) by ``law``, below;
    3. client ``j`` gets the ``j``-th consecutive slice of ``pi`` of length ``s_j`` (sorted).

    Sizes from proportions ``q`` over a total ``T`` use NIID-Bench's cut: cut points
    ``floor(cumsum(q) * T)`` without the last; the parts between them are the sizes.

    - ``dirichlet`` (NIID-Bench ``iid-diff-quantity``): ``q ~ Dir(beta * 1_N)``, ``T = n``. A draw is
      accepted when ``min_j q_j * n >= min_size`` (NIID-Bench's rule, with its fixed 10 made
      ``min_size``), else redrawn; draws are made ``1024`` at a time and the first acceptable one in
      draw order is used, at most ``max_attempts`` in all, then :class:`PartitionError`. Small beta:
      very unequal sizes; large beta: near-equal.
    - ``lognormal``: weights ``w_j = exp(sigma * z_j)``, ``z_j ~ N(0, 1)`` (``lognormal(0, sigma)``;
      ``sigma = 0`` gives equal weights); ``powerlaw``: ``w_j = exp(E_j / exponent)``, ``E_j ~ Exp(1)``,
      which is Pareto with scale 1 and tail index ``exponent`` (``P(w > x) = x^-exponent``, density
      ``~ x^-(exponent+1)``; numpy's ``1 + pareto(exponent)``); smaller ``exponent``, heavier tail.
      Both are computed in log space, so no weight overflows. Every client first gets ``min_size``
      samples and the other ``T = n - N * min_size`` are cut by ``q = w / sum(w)``: sizes are
      ``min_size`` plus a share proportional to the weights, with no redraw (as FedProx's synthetic
      data adds 50 to its lognormal sizes).

    Raises :class:`PartitionError` when ``N * min_size > n``.
    """
    labels = check_labels(labels)
    num_clients = check_int("num_clients", num_clients, 1)
    beta, sigma, exponent, min_size, max_attempts = check_law(
        "law", law, LAWS, beta, sigma, exponent, min_size, max_attempts
    )
    n = labels.size
    check_min_size(min_size, num_clients, n)
    perm = rng.permutation(n)
    sizes = draw_sizes(law, n, num_clients, rng, beta, sigma, exponent, min_size, max_attempts)
    return as_parts(perm, sizes)
