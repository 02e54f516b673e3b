"""FedProx's Synthetic(alpha, beta) data: 30 devices with their own softmax-regression model.

Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith, "Federated Optimization in Heterogeneous Networks",
MLSys 2020 (arXiv:1812.06127), Section 5.1 and Appendix C.1, and the authors' generators
``data/synthetic_{0_0,0.5_0.5,1_1}/generate_synthetic.py`` and ``data/synthetic_iid/generate_iid.py``
in https://github.com/litian96/FedProx. Device ``k`` (of ``num_devices``, 30 in the paper):

- size ``n_k = int(lognormal(mean=4, sigma=2)) + 50``;
- ``u_k ~ N(0, alpha)``; ``W_k`` (``dim x num_classes``, 60 x 10) and ``b_k`` (10) have i.i.d.
  entries ``~ N(u_k, 1)`` (the same ``u_k`` for both);
- ``B_k ~ N(0, beta)``; ``v_k`` (60) has i.i.d. entries ``~ N(B_k, 1)``;
- ``x ~ N(v_k, Sigma)`` with ``Sigma`` diagonal, ``Sigma_jj = j^(-1.2)``, ``j = 1..dim``;
- ``y = argmax(softmax(W_k^T x + b_k))``.

The IID variant (``iid=True``) draws one ``W, b`` with entries ``~ N(0, 1)`` shared by every
device and sets ``v_k = 0``; ``alpha`` and ``beta`` are then ignored (the reference's
``generate_iid.py`` ignores its arguments too). Note that Synthetic(0, 0) is *not* IID: every device
still draws its own ``W_k``, ``b_k`` and ``v_k``.

Where the reference code and the paper's text differ, we follow the code, since the published
numbers come from it:

- **Scale of N(0, alpha) and N(0, beta).** The code draws ``np.random.normal(0, alpha, ...)`` and
  ``np.random.normal(0, beta, ...)``: numpy's second argument is the *standard deviation*, so
  ``alpha`` and ``beta`` are standard deviations (variances ``alpha**2``, ``beta**2``), where the
  paper's ``N(0, alpha)`` would usually read as a variance. Identical for the paper's (0, 0) and
  (1, 1); for Synthetic(0.5, 0.5) the variance is 0.25, not 0.5.
- **Device sizes.** The paper says the sizes follow a power law; the code draws
  ``np.random.lognormal(4, 2, num_users).astype(int) + 50`` (truncation towards zero, at least 50).
- **Labels.** The code takes ``argmax`` of ``softmax`` computed as ``exp(z) / sum(exp(z))`` without
  subtracting the maximum; when a logit exceeds ~709, ``exp`` overflows to ``inf``, the softmax has
  NaNs and ``np.argmax`` returns the first NaN, not the largest logit. We take ``argmax`` of the
  logits (softmax is monotone, so this is the paper's definition). The two agree on every sample
  for the paper's settings (checked on 20 seeds each of (0, 0), (0.5, 0.5), (1, 1) with the
  reference code); they differ on some samples from alpha = beta = 2 upwards.
- **Train/test split.** The code shuffles each device's samples (``random.shuffle``) and keeps the
  first ``int(0.9 * n_k)`` for training; :func:`split_devices` does the same with our generator.
- **Random streams.** The reference draws from numpy's global, unseeded legacy state, so its
  files cannot be regenerated bit for bit; we draw from the ``numpy.random.Generator`` passed in
  (same distributions, different numbers). ``np.random.multivariate_normal`` with a diagonal
  ``Sigma`` is the same distribution as ``v_k + sqrt(diag(Sigma)) * z``, which is what we draw.

A property of the model (ours and the reference's alike), worth knowing before sweeping alpha:
``u_k`` shifts every logit of a sample by the same amount, ``u_k * (sum_j x_j + 1)``, so it never
changes the argmax. Alpha therefore has no effect on the data: with the same generator state,
two alphas give identical ``x`` and labels that agree up to floating-point rounding of near-ties.
Heterogeneity across devices comes from the per-device noise in ``W_k``, ``b_k`` and from ``v_k``
(beta: a larger ``|B_k|`` also concentrates a device's labels on fewer classes).

Draw order (so that a test, or anyone, can reproduce the numbers from the same generator): with
``K = num_devices``, ``d = dim``, ``C = num_classes``, ``s = sqrt(diag(Sigma))``:

- non-IID: ``sizes = (rng.lognormal(4, 2, K).astype(int64) + 50)``; ``u = rng.normal(0, alpha, K)``;
  ``B = rng.normal(0, beta, K)``; for each k: ``v[k] = rng.normal(B[k], 1, d)``; then for each k:
  ``W = rng.normal(u[k], 1, (d, C))``, ``b = rng.normal(u[k], 1, C)``,
  ``x = v[k] + rng.standard_normal((n_k, d)) * s``, ``y = argmax(x @ W + b, axis=1)``;
- IID: ``sizes`` as above; ``W = rng.normal(0, 1, (d, C))``; ``b = rng.normal(0, 1, C)``; for each
  k: ``x = rng.standard_normal((n_k, d)) * s``, ``y = argmax(x @ W + b, axis=1)``.

Labels are computed in float64; ``x`` is returned as float32.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

Device = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class DeviceParams:
    """One device's draws: ``y = argmax(x @ W + b)``, ``x ~ N(v, Sigma)``.

    ``u`` is the mean of ``W``'s and ``b``'s entries and ``B`` the mean of ``v``'s (both 0 in the
    IID variant, whose ``W`` and ``b`` are the same objects on every device).
    """

    W: np.ndarray
    b: np.ndarray
    v: np.ndarray
    u: float
    B: float


def covariance_diagonal(dim: int = 60) -> np.ndarray:
    """``Sigma_jj = j^(-1.2)`` for ``j = 1..dim`` (float64)."""
    return np.arange(1, dim + 1, dtype=np.float64) ** -1.2


def _check(alpha: float, beta: float, num_devices: int, dim: int, num_classes: int) -> None:
    for name, value in (("alpha", alpha), ("beta", beta)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}={value!r}: must be a finite number >= 0 (a standard deviation)")
    for name, value, low in (("num_devices", num_devices, 1), ("dim", dim, 1), ("num_classes", num_classes, 2)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name}={value!r}: must be an integer >= {low}")


def generate_fedprox_synthetic(
    alpha: float,
    beta: float,
    iid: bool,
    rng: np.random.Generator,
    num_devices: int = 30,
    dim: int = 60,
    num_classes: int = 10,
    *,
    return_params: bool = False,
) -> list[Device] | tuple[list[Device], list[DeviceParams]]:
    """FedProx's Synthetic(alpha, beta) (or the IID variant) as one ``(x, y)`` pair per device.

    ``x`` is float32 ``(n_k, dim)``, ``y`` int64 ``(n_k,)`` in ``[0, num_classes)``. See the module
    docstring for the definition, the draw order and where we differ from the reference code.
    With ``return_params=True`` also returns each device's :class:`DeviceParams`.
    """
    _check(alpha, beta, num_devices, dim, num_classes)
    num_devices, dim, num_classes = int(num_devices), int(dim), int(num_classes)
    scale = np.sqrt(covariance_diagonal(dim))
    sizes = rng.lognormal(4.0, 2.0, num_devices).astype(np.int64) + 50
    params: list[DeviceParams] = []
    devices: list[Device] = []

    def draw_device(k: int, p: DeviceParams) -> None:
        x = p.v + rng.standard_normal((int(sizes[k]), dim)) * scale
        y = np.argmax(x @ p.W + p.b, axis=1).astype(np.int64)
        params.append(p)
        devices.append((x.astype(np.float32), y))

    if iid:
        W = rng.normal(0.0, 1.0, (dim, num_classes))
        b = rng.normal(0.0, 1.0, num_classes)
        v = np.zeros(dim)
        for k in range(num_devices):
            draw_device(k, DeviceParams(W, b, v, 0.0, 0.0))
    else:
        u = rng.normal(0.0, float(alpha), num_devices)
        B = rng.normal(0.0, float(beta), num_devices)
        vs = [rng.normal(B[k], 1.0, dim) for k in range(num_devices)]
        for k in range(num_devices):
            W = rng.normal(u[k], 1.0, (dim, num_classes))
            b = rng.normal(u[k], 1.0, num_classes)
            draw_device(k, DeviceParams(W, b, vs[k], float(u[k]), float(B[k])))
    return (devices, params) if return_params else devices


def split_devices(
    devices: list[Device], rng: np.random.Generator, train_fraction: float = 0.9
) -> tuple[list[Device], list[Device]]:
    """Split every device's samples into train and test, as the reference ``main()`` does.

    The reference shuffles each user's samples (``random.shuffle``) and keeps the first
    ``int(0.9 * n_k)`` for training and the rest for testing. Here device ``k``'s order is
    ``rng.permutation(n_k)`` (devices in order, one permutation each) and the first
    ``int(train_fraction * n_k)`` permuted samples are its training set. Returns
    ``(train, test)``, one ``(x, y)`` pair per device in each, in the devices' order.
    """
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, numbers.Real) or not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction={train_fraction!r}: must be a number with 0 < train_fraction < 1")
    train: list[Device] = []
    test: list[Device] = []
    for x, y in devices:
        if len(x) != len(y):
            raise ValueError(f"a device has {len(x)} inputs but {len(y)} labels")
        order = rng.permutation(len(y))
        n_train = int(train_fraction * len(y))
        train.append((x[order[:n_train]], y[order[:n_train]]))
        test.append((x[order[n_train:]], y[order[n_train:]]))
    return train, test
