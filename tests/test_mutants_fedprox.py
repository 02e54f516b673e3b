"""Known-answer tests for :mod:`fedbench.data.fedprox_synthetic` written for its mutation run.

Expected values come from the definition (Li et al. 2020, Section 5.1, and the module docstring's
draw order), written out below with numpy independently of the module, or by hand in the comments;
error messages are matched whole (anchored)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from fedbench.data.fedprox_synthetic import covariance_diagonal, generate_fedprox_synthetic, split_devices


def _reference(alpha, beta, iid, seed, K, d, C):
    """Synthetic(alpha, beta) from the definition: sizes int(lognormal(4, 2)) + 50; u_k ~ N(0, alpha),
    B_k ~ N(0, beta) (numpy's scale = standard deviation), v_k ~ N(B_k, 1)^d; W_k ~ N(u_k, 1)^(d x C),
    b_k ~ N(u_k, 1)^C; x ~ N(v_k, diag(j^-1.2)); y = argmax of the logits. IID: one W, b ~ N(0, 1),
    v = 0, u = B = 0. Returns per device (x float64, y, W, b, v, u, B)."""
    rng = np.random.default_rng(seed)
    sd = np.array([math.sqrt(1.0 / j**1.2) for j in range(1, d + 1)])
    n = [int(s) + 50 for s in rng.lognormal(4, 2, K)]
    out = []
    if iid:
        W = rng.normal(0, 1, size=(d, C))
        b = rng.normal(0, 1, size=C)
        for k in range(K):
            x = rng.standard_normal((n[k], d)) * sd
            out.append((x, np.argmax(x @ W + b, axis=1), W, b, np.zeros(d), 0.0, 0.0))
        return out
    u = rng.normal(0, alpha, size=K)
    B = rng.normal(0, beta, size=K)
    v = [rng.normal(B[k], 1, size=d) for k in range(K)]
    for k in range(K):
        W = rng.normal(u[k], 1, size=(d, C))
        b = rng.normal(u[k], 1, size=C)
        x = v[k] + rng.standard_normal((n[k], d)) * sd
        out.append((x, np.argmax(x @ W + b, axis=1), W, b, v[k], float(u[k]), float(B[k])))
    return out


def test_covariance_diagonal_defaults_to_the_papers_60_features():
    s = covariance_diagonal()
    assert s.dtype == np.float64 and s.shape == (60,)
    # Sigma_11 = 1^-1.2 = 1; Sigma_22 = 2^-1.2 = 1 / 2^1.2 = 1 / 2.29739670... = 0.43527528...
    assert s[0] == 1.0
    assert s[1] == pytest.approx(0.435275281648062, rel=1e-12)
    assert s[59] == pytest.approx(1.0 / 60**1.2, rel=1e-12)  # 60^1.2 = 136.4296...: 0.0073298...


@pytest.mark.parametrize("iid", [False, True])
def test_small_configuration_matches_the_definition(iid):
    # 3 devices, 4 features, 3 classes: x, y and every device's (W, b, v, u, B) from _reference
    devices, params = generate_fedprox_synthetic(
        0.7, 1.3, iid, np.random.default_rng(2), num_devices=3, dim=4, num_classes=3, return_params=True
    )
    ref = _reference(0.7, 1.3, iid, 2, 3, 4, 3)
    assert len(devices) == len(params) == 3
    for (x, y), p, (rx, ry, W, b, v, u, B) in zip(devices, params, ref, strict=True):
        assert x.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_array_equal(x, rx.astype(np.float32))
        np.testing.assert_array_equal(y, ry)
        assert p.W.shape == (4, 3) and p.b.shape == (3,) and p.v.shape == (4,)
        np.testing.assert_array_equal(p.W, W)
        np.testing.assert_array_equal(p.b, b)
        np.testing.assert_array_equal(p.v, v)
        assert type(p.u) is float and type(p.B) is float
        assert (p.u, p.B) == (u, B)


def test_iid_devices_have_zero_feature_means_and_no_u_or_b_shift():
    _, params = generate_fedprox_synthetic(
        2.0, 3.0, True, np.random.default_rng(0), num_devices=2, dim=5, return_params=True
    )
    for p in params:
        assert p.v.shape == (5,) and not p.v.any()
        assert p.u == 0.0 and p.B == 0.0


def test_the_default_returns_only_the_devices():
    out = generate_fedprox_synthetic(0.0, 0.0, False, np.random.default_rng(0), num_devices=2, dim=3, num_classes=2)
    assert isinstance(out, list) and len(out) == 2 and all(isinstance(dev, tuple) and len(dev) == 2 for dev in out)


def _msg(text: str) -> str:
    return "^" + re.escape(text) + "$"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -0.5}, "alpha=-0.5: must be a finite number >= 0 (a standard deviation)"),
        ({"alpha": True}, "alpha=True: must be a finite number >= 0 (a standard deviation)"),
        ({"alpha": "1"}, "alpha='1': must be a finite number >= 0 (a standard deviation)"),
        ({"alpha": math.inf}, "alpha=inf: must be a finite number >= 0 (a standard deviation)"),
        ({"beta": -1}, "beta=-1: must be a finite number >= 0 (a standard deviation)"),
        ({"beta": math.nan}, "beta=nan: must be a finite number >= 0 (a standard deviation)"),
        ({"beta": False}, "beta=False: must be a finite number >= 0 (a standard deviation)"),
        ({"num_devices": 0}, "num_devices=0: must be an integer >= 1"),
        ({"num_devices": True}, "num_devices=True: must be an integer >= 1"),
        ({"num_devices": 2.0}, "num_devices=2.0: must be an integer >= 1"),
        ({"dim": 0}, "dim=0: must be an integer >= 1"),
        ({"dim": True}, "dim=True: must be an integer >= 1"),
        ({"dim": 2.5}, "dim=2.5: must be an integer >= 1"),
        ({"num_classes": 1}, "num_classes=1: must be an integer >= 2"),
        ({"num_classes": True}, "num_classes=True: must be an integer >= 2"),
        ({"num_classes": "3"}, "num_classes='3': must be an integer >= 2"),
    ],
)
def test_bad_arguments_are_refused_with_the_whole_message(kwargs, message):
    args = {"alpha": 1.0, "beta": 1.0, "iid": False, "rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(ValueError, match=_msg(message)):
        generate_fedprox_synthetic(**args)


def test_the_smallest_allowed_arguments_are_accepted():
    # alpha = beta = 0, one device, one feature, two classes; numpy scalars count as numbers
    devices = generate_fedprox_synthetic(
        np.float64(0.0), 0, False, np.random.default_rng(1), num_devices=np.int64(1), dim=1, num_classes=2
    )
    ((x, y),) = devices
    assert x.shape == (len(y), 1) and len(y) >= 50 and set(np.unique(y)) <= {0, 1}


def test_split_devices_by_hand():
    # one device of 5 samples, train_fraction 0.5: int(0.5 * 5) = 2 to train, 3 to test, in the order
    # of rng.permutation(5); a second device of 4 samples with the next permutation: int(2.0) = 2
    x1, y1 = np.arange(10.0).reshape(5, 2), np.array([0, 1, 2, 3, 4])
    x2, y2 = np.arange(8.0).reshape(4, 2) + 100, np.array([5, 6, 7, 8])
    train, test = split_devices([(x1, y1), (x2, y2)], np.random.default_rng(4), train_fraction=0.5)
    rng = np.random.default_rng(4)
    o1, o2 = rng.permutation(5), rng.permutation(4)
    assert [t[1].tolist() for t in train] == [y1[o1[:2]].tolist(), y2[o2[:2]].tolist()]
    assert [t[1].tolist() for t in test] == [y1[o1[2:]].tolist(), y2[o2[2:]].tolist()]
    np.testing.assert_array_equal(train[0][0], x1[o1[:2]])
    np.testing.assert_array_equal(test[1][0], x2[o2[2:]])


def test_split_devices_default_keeps_90_percent():
    # 21 samples: int(0.9 * 21) = int(18.9) = 18 to train, 3 to test
    y = np.arange(21)
    train, test = split_devices([(np.zeros((21, 1)), y)], np.random.default_rng(0))
    assert len(train[0][1]) == 18 and len(test[0][1]) == 3


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.0, -0.1, 1.5, True, "0.5", math.nan])
def test_split_devices_refuses_fractions_outside_the_open_interval(fraction):
    message = f"train_fraction={fraction!r}: must be a number with 0 < train_fraction < 1"
    with pytest.raises(ValueError, match=_msg(message)):
        split_devices([(np.zeros((4, 1)), np.zeros(4))], np.random.default_rng(0), train_fraction=fraction)


def test_split_devices_refuses_a_device_with_more_inputs_than_labels():
    with pytest.raises(ValueError, match=_msg("a device has 3 inputs but 2 labels")):
        split_devices([(np.zeros((3, 1)), np.zeros(2))], np.random.default_rng(0))
