"""Label-skewed (non-IID) partitions drawn from Dirichlet distributions.

Two different conventions share the name "Dirichlet partition" and are easily confused; both use a
concentration ``alpha`` (small = skewed, large = close to IID) but put the Dirichlet on different axes.

``dirichlet_per_class`` -- *per-class proportions across clients* (Yurochkin et al. 2019; the
``noniid-labeldir`` partition of NIID-Bench, Li et al. 2022). For every class ``k`` draw
``p_k ~ Dir(alpha * 1_N)`` over the ``N`` clients and hand out that class's samples in those
proportions. Every sample is used; client sizes vary (a lot at small alpha), and a minimum client size
is enforced by redrawing the whole partition.

``dirichlet_per_client`` -- *per-client class priors* (Hsu, Qi & Brown 2019). For every client ``i``
draw a class distribution ``q_i ~ Dir(alpha * p)`` over the ``K`` classes, where ``p`` is the global
class distribution, and sample a fixed number of points from the pool according to ``q_i``. Every
client has the same size; some samples may stay unassigned.

So at the same alpha the two give different skews: ``Dir(alpha * 1_N)`` has total concentration
``alpha * N`` spread over clients, ``Dir(alpha * p)`` has total concentration ``alpha`` spread over
classes. Report which convention an experiment used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedbench.registry import integer, number, one_of, option, register

from .base import PartitionError, as_parts, check_alpha, check_int, check_labels, check_min_size
from .base import class_pools as _class_pools
from .feature import FeatureSkewOptions
from .quantity import LAWS, SizeLawOptions, check_law, draw_sizes

_ALPHA = number(min=0, min_open=True)


@register("partition", "dirichlet_class")
@dataclass
class DirichletClassConfig(FeatureSkewOptions):
    name: str = "dirichlet_class"
    alpha: float = option(0.5, _ALPHA)
    min_size: int = option(10, integer(0))
    max_attempts: int = option(100, integer(1))
    balance: bool = True


@register("partition", "dirichlet_client")
@dataclass
class DirichletClientConfig(SizeLawOptions):
    name: str = "dirichlet_client"
    alpha: float = option(0.5, _ALPHA)
    client_size: int | None = option(None, integer(1, nullable=True))
    sizes: str = option("equal", one_of("equal", *LAWS))  # the law's keys come from SizeLawOptions


def _balanced(p: np.ndarray, sizes: np.ndarray, cap: float) -> np.ndarray:
    """NIID-Bench's balance rule: clients already holding ``>= cap`` samples get no share of this class.

    If that zeroes every proportion (possible when ``p`` itself has exact zeros, e.g. at tiny alpha, and
    its mass sits on full clients) the unbalanced ``p`` is kept, instead of dividing 0 by 0.
    """
    q = np.where(sizes < cap, p, 0.0)
    total = q.sum()
    return q / total if total > 0 else p


def dirichlet_per_class(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 10,
    max_attempts: int = 100,
    balance: bool = True,
) -> list[np.ndarray]:
    """Per-class Dirichlet proportions across clients (NIID-Bench ``noniid-labeldir``).

    Yurochkin et al. 2019, "Bayesian Nonparametric Federated Learning of Neural Networks", as
    implemented by Li et al. 2022, "Federated Learning on Non-IID Data Silos: An Experimental Study"
    (github.com/Xtra-Computing/NIID-Bench). One attempt, for every class ``k`` with ``n_k`` samples:

    1. shuffle class ``k``'s indices; draw ``p ~ Dir(alpha * 1_N)`` over the ``N`` clients;
    2. if ``balance``: ``p_j = 0`` for every client ``j`` already holding ``>= len(labels) / N``
       samples, then renormalise (if that zeroes all of ``p``, keep the unbalanced ``p``);
    3. cut points ``(cumsum(p) * n_k).astype(int)[:-1]``; client ``j`` gets the ``j``-th slice.

    The attempt is accepted when every client holds ``>= min_size`` samples; otherwise the whole
    partition is redrawn, up to ``max_attempts`` times, then :class:`PartitionError` is raised. All
    indices are assigned. A non-finite or all-zero Dirichlet draw (underflow at tiny alpha) is replaced
    by a one-hot vector on a uniformly chosen client, which is the ``alpha -> 0`` limit.
    """
    labels = check_labels(labels)
    num_clients = check_int("num_clients", num_clients, 1)
    alpha = check_alpha(alpha)
    min_size = check_int("min_size", min_size, 0)
    max_attempts = check_int("max_attempts", max_attempts, 1)
    n = labels.size
    check_min_size(min_size, num_clients, n)
    classes, pools = _class_pools(labels)
    client_ids = np.arange(num_clients)
    cap = n / num_clients
    best = -1
    for _ in range(max_attempts):
        owner = np.empty(n, dtype=np.int64)
        sizes = np.zeros(num_clients, dtype=np.int64)
        for pool in pools:
            idx_k = rng.permutation(pool)
            p = rng.dirichlet(np.full(num_clients, alpha))
            if not (np.all(np.isfinite(p)) and p.sum() > 0):
                p = np.zeros(num_clients)
                p[rng.integers(num_clients)] = 1.0
            if balance:
                p = _balanced(p, sizes, cap)
            cuts = np.minimum((np.cumsum(p) * idx_k.size).astype(np.int64)[:-1], idx_k.size)
            counts = np.diff(cuts, prepend=0, append=idx_k.size)
            owner[idx_k] = np.repeat(client_ids, counts)
            sizes += counts
        smallest = int(sizes.min())
        if smallest >= min_size:
            return as_parts(np.argsort(owner, kind="stable"), sizes)
        best = max(best, smallest)
    raise PartitionError(
        f"dirichlet_per_class found no partition with every client >= min_size={min_size} samples in "
        f"{max_attempts} attempts (alpha={alpha:g}, num_clients={num_clients}, {n} samples, {classes.size} "
        f"classes; best attempt's smallest client had {best}); use a larger alpha, fewer clients or a "
        "smaller min_size"
    )


def _fill(q: np.ndarray, left: np.ndarray, need: int, rng: np.random.Generator) -> np.ndarray:
    """Per-class counts summing to ``need``, sampled by ``q`` restricted to classes with samples left.

    Draw multinomial counts, cap each class at what is left, redraw the shortfall among classes still
    available. Each round either fills the client or exhausts a class, so it ends within K+1 rounds.
    """
    got = np.zeros_like(left)
    while need > 0:
        avail = left - got
        w = np.where(avail > 0, q, 0.0)
        total = w.sum()
        if not total > np.finfo(float).tiny:
            # q has (numerically) no mass on any class that is left: draw from what the pool holds.
            w = avail.astype(float)
            total = w.sum()
        take = np.minimum(rng.multinomial(need, w / total), avail)
        got += take
        need -= int(take.sum())
    return got


def dirichlet_per_client(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    rng: np.random.Generator,
    client_size: int | None = None,
    sizes: str = "equal",
    beta: float = 0.5,
    sigma: float = 1.0,
    exponent: float = 1.5,
    min_size: int = 10,
    max_attempts: int = 100_000,
) -> list[np.ndarray]:
    """Per-client Dirichlet class priors (Hsu, Qi & Brown 2019), optionally with skewed sizes.

    Hsu, Qi & Brown 2019, "Measuring the Effects of Non-Identical Data Distribution for Federated
    Visual Classification". With ``p`` the global class distribution (class counts / total, over classes
    present), each client ``i`` in turn draws ``q_i ~ Dir(alpha * p)`` and receives exactly
    ``client_size`` samples (default ``len(labels) // num_clients``) drawn without replacement from the
    remaining pool: classes are chosen according to ``q_i`` restricted to classes that still have
    samples, renormalised, and within a class samples are taken uniformly at random.

    Samples not assigned to any client (``len(labels) - num_clients * client_size`` of them) are
    simply unused. Clients are filled in order, so when ``num_clients * client_size`` is close to
    ``len(labels)`` the last clients get what is left and are less skewed than their ``q_i``; a smaller
    ``client_size`` leaves slack.

    Quantity x label skew: with ``sizes`` one of ``dirichlet``, ``lognormal``, ``powerlaw``, client
    ``i`` receives ``s_i`` samples instead, ``s`` drawn first by that law of
    :func:`fedbench.partition.quantity.quantity` (keys ``beta``, ``sigma``, ``exponent``,
    ``min_size``, ``max_attempts``) over the total ``T = client_size * N``, so ``client_size`` is the
    mean size; then each client in turn draws its prior and its ``s_i`` samples as above. With
    ``sizes="equal"`` (default) nothing is drawn for the sizes and those keys are unused.

    Edge cases: a non-finite or all-zero ``q_i`` (underflow at tiny alpha) is replaced by a one-hot
    vector on a class drawn with probability ``p``, the ``alpha -> 0`` limit; if ``q_i`` has no mass
    left on any class that still has samples, the rest is drawn in proportion to what remains.
    """
    labels = check_labels(labels)
    num_clients = check_int("num_clients", num_clients, 1)
    alpha = check_alpha(alpha)
    n = labels.size
    if client_size is None:
        if n < num_clients:
            raise PartitionError(
                f"only {n} labels for num_clients={num_clients}, so every client would be empty; use fewer clients"
            )
        client_size = n // num_clients
    client_size = check_int("client_size", client_size, 1)
    if client_size * num_clients > n:
        raise PartitionError(
            f"client_size={client_size} x num_clients={num_clients} needs {client_size * num_clients} "
            f"samples but there are only {n}; use a smaller client_size or fewer clients"
        )
    per_client = np.full(num_clients, client_size, dtype=np.int64)
    if sizes != "equal":
        law = check_law("sizes", sizes, ("equal", *LAWS), beta, sigma, exponent, min_size, max_attempts)
        if law[3] > client_size:
            raise PartitionError(
                f"min_size={law[3]} is more than the mean client size client_size={client_size}; "
                "use a smaller min_size, a larger client_size or fewer clients"
            )
        key = ("dirichlet_client", "sizes")
        per_client = draw_sizes(sizes, client_size * num_clients, num_clients, rng, *law, key=key)
    classes, pools = _class_pools(labels)
    pools = [rng.permutation(pool) for pool in pools]
    left = np.array([pool.size for pool in pools], dtype=np.int64)
    prior = left / n
    # alpha * prior can underflow to 0 for absurdly small alpha; older numpy rejects a zero concentration.
    concentration = np.maximum(alpha * prior, np.finfo(float).tiny)
    used = np.zeros_like(left)
    parts = []
    for need in per_client:
        q = rng.dirichlet(concentration)
        if not (np.all(np.isfinite(q)) and q.sum() > 0):
            q = np.zeros(classes.size)
            q[rng.choice(classes.size, p=prior)] = 1.0
        take = _fill(q, left, int(need), rng)
        chunks = [pools[c][used[c] : used[c] + take[c]] for c in np.flatnonzero(take)]
        used += take
        left -= take
        parts.append(np.sort(np.concatenate([np.zeros(0, np.int64), *chunks])).astype(np.int64, copy=False))
    return parts
