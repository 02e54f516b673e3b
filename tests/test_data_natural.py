"""Natural-client data sources: FedProx's Synthetic(alpha, beta) generator and LEAF's JSON reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedbench.data.fedprox_synthetic import (
    covariance_diagonal,
    generate_fedprox_synthetic,
    split_devices,
)
from fedbench.data.leaf import ALL_LETTERS, read_leaf

# --------------------------------------------------------------------------------------------
# FedProx synthetic


def _redraw(alpha: float, beta: float, iid: bool, seed: int, k: int = 30, d: int = 60, c: int = 10):
    """The module docstring's draw order, written out independently: per device (x, W, b, v)."""
    rng = np.random.default_rng(seed)
    s = np.sqrt(np.array([(j + 1) ** -1.2 for j in range(d)]))
    sizes = rng.lognormal(4, 2, k).astype(np.int64) + 50
    out = []
    if iid:
        W, b = rng.normal(0, 1, (d, c)), rng.normal(0, 1, c)
        for n in sizes:
            out.append((rng.standard_normal((n, d)) * s, W, b, np.zeros(d)))
        return out
    u, B = rng.normal(0, alpha, k), rng.normal(0, beta, k)
    v = [rng.normal(B[i], 1, d) for i in range(k)]
    for i, n in enumerate(sizes):
        W, b = rng.normal(u[i], 1, (d, c)), rng.normal(u[i], 1, c)
        out.append((v[i] + rng.standard_normal((n, d)) * s, W, b, v[i]))
    return out


def _einsum_labels(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.argmax(np.einsum("nd,dc->nc", x, W) + b[None, :], axis=1)


@pytest.mark.parametrize("iid", [False, True])
def test_synthetic_shapes_dtypes_sizes(iid):
    devices = generate_fedprox_synthetic(1.0, 1.0, iid, np.random.default_rng(3))
    expected_sizes = np.random.default_rng(3).lognormal(4, 2, 30).astype(int) + 50
    assert [len(y) for _, y in devices] == expected_sizes.tolist()
    assert len(devices) == 30
    for x, y in devices:
        assert x.dtype == np.float32 and x.shape == (len(y), 60)
        assert y.dtype == np.int64 and y.min() >= 0 and y.max() < 10


def test_synthetic_other_dimensions():
    devices = generate_fedprox_synthetic(0.5, 0.5, False, np.random.default_rng(0), num_devices=4, dim=7, num_classes=3)
    assert len(devices) == 4
    assert all(x.shape[1] == 7 and set(np.unique(y)) <= {0, 1, 2} for x, y in devices)


@pytest.mark.parametrize(
    ("alpha", "beta", "iid"), [(1.0, 1.0, False), (0.5, 0.5, False), (0.0, 0.0, False), (0, 0, True)]
)
def test_synthetic_follows_documented_draw_order(alpha, beta, iid):
    """Redrawing in the documented order gives the same x (to float32) and the same labels,
    recomputed with a different contraction (einsum) from the redrawn float64 x."""
    devices, params = generate_fedprox_synthetic(alpha, beta, iid, np.random.default_rng(11), return_params=True)
    redrawn = _redraw(alpha, beta, iid, 11)
    for (x, y), p, (x64, W, b, v) in zip(devices, params, redrawn, strict=True):
        np.testing.assert_array_equal(x, x64.astype(np.float32))
        np.testing.assert_array_equal(p.W, W)
        np.testing.assert_array_equal(p.b, b)
        np.testing.assert_array_equal(p.v, v)
        np.testing.assert_array_equal(y, _einsum_labels(x64, W, b))


def test_synthetic_labels_are_argmax_of_the_returned_parameters():
    devices, params = generate_fedprox_synthetic(1.0, 1.0, False, np.random.default_rng(5), return_params=True)
    agree = total = 0
    for (x, y), p in zip(devices, params):
        # float32 x rounds the inputs, so allow the rare near-tie to flip
        agree += int((_einsum_labels(x.astype(np.float64), p.W, p.b) == y).sum())
        total += len(y)
        assert p.W.shape == (60, 10) and p.b.shape == (10,) and p.v.shape == (60,)
    assert agree >= 0.999 * total


def test_synthetic_is_deterministic_for_a_seed():
    a = generate_fedprox_synthetic(1.0, 1.0, False, np.random.default_rng(7))
    b = generate_fedprox_synthetic(1.0, 1.0, False, np.random.default_rng(7))
    c = generate_fedprox_synthetic(1.0, 1.0, False, np.random.default_rng(8))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0][:50], c[0][0][:50])


def test_synthetic_iid_feature_moments_within_each_large_device():
    """IID: x ~ N(0, Sigma), Sigma_jj = j^-1.2, on every device. Checked on devices with >= 1000
    samples: sample variances within 5 standard errors (se = var * sqrt(2 / (n - 1))) and means
    within 5 standard errors (sqrt(var / n))."""
    devices = generate_fedprox_synthetic(0, 0, True, np.random.default_rng(6))  # 3 devices >= 1000
    target = covariance_diagonal(60)
    large = [x.astype(np.float64) for x, y in devices if len(y) >= 1000]
    assert len(large) >= 3
    for x in large:
        n = len(x)
        assert np.all(np.abs(x.var(axis=0, ddof=1) - target) <= 5 * target * np.sqrt(2 / (n - 1)))
        assert np.all(np.abs(x.mean(axis=0)) <= 5 * np.sqrt(target / n))


def test_synthetic_non_iid_within_device_covariance_is_sigma():
    devices, params = generate_fedprox_synthetic(
        1.0, 1.0, False, np.random.default_rng(8), return_params=True
    )  # 3 >= 1000
    target = covariance_diagonal(60)
    checked = 0
    for (x, y), p in zip(devices, params):
        if len(y) < 1000:
            continue
        checked += 1
        x = x.astype(np.float64)
        n = len(x)
        assert np.all(np.abs(x.var(axis=0, ddof=1) - target) <= 5 * target * np.sqrt(2 / (n - 1)))
        assert np.all(np.abs(x.mean(axis=0) - p.v) <= 5 * np.sqrt(target / n))
    assert checked >= 3


def test_synthetic_iid_shares_one_labelling_function():
    """IID: one W, b for all devices, so the label is a function of x alone: device 0's (W, b)
    labels every other device's samples exactly as they were labelled."""
    devices, params = generate_fedprox_synthetic(0, 0, True, np.random.default_rng(4), return_params=True)
    assert all(p.W is params[0].W and p.b is params[0].b for p in params)
    for x, y in devices:
        logits = x.astype(np.float64) @ params[0].W + params[0].b
        assert (np.argmax(logits, axis=1) == y).mean() >= 0.999


def _mean_kl_to_global(devices, num_classes: int = 10) -> float:
    ys = np.concatenate([y for _, y in devices])
    q = np.bincount(ys, minlength=num_classes) / len(ys)
    kls = []
    for _, y in devices:
        p = np.bincount(y, minlength=num_classes) / len(y)
        m = p > 0
        kls.append(float(np.sum(p[m] * np.log(p[m] / q[m]))))
    return float(np.mean(kls))


def test_synthetic_label_distributions_differ_across_devices_unless_iid():
    """Mean KL(device label distribution || global one) over 5 seeds: IID only has sampling noise
    (< 0.2 nats with >= 50 samples per device), Synthetic(0, 0) already > 1 nat (own W_k, v_k)."""
    iid = np.mean(
        [_mean_kl_to_global(generate_fedprox_synthetic(0, 0, True, np.random.default_rng(s))) for s in range(5)]
    )
    niid = np.mean(
        [_mean_kl_to_global(generate_fedprox_synthetic(0, 0, False, np.random.default_rng(s))) for s in range(5)]
    )
    assert iid < 0.2
    assert niid > 1.0


def test_synthetic_alpha_does_not_change_the_data():
    """u_k adds u_k * (sum(x) + 1) to every logit of a sample, so the argmax ignores it: with the
    same generator state, x is bit-identical and the labels agree (up to rounding of near-ties)."""
    base = generate_fedprox_synthetic(0.0, 1.0, False, np.random.default_rng(9))
    for alpha in (0.5, 1.0, 5.0):
        other, params = generate_fedprox_synthetic(alpha, 1.0, False, np.random.default_rng(9), return_params=True)
        assert np.std([p.u for p in params]) > 0.2 * alpha  # u_k really differs across devices
        agree = total = 0
        for (x0, y0), (x1, y1) in zip(base, other, strict=True):
            np.testing.assert_array_equal(x0, x1)
            agree += int((y0 == y1).sum())
            total += len(y0)
        assert agree >= 0.999 * total


def test_synthetic_feature_means_spread_more_as_beta_grows():
    """Device k's average feature is about B_k + N(0, 1/60): its spread across the 30 devices
    (std) is about sqrt(beta^2 + 1/60); checked increasing over beta in (0, 0.5, 1, 2), each std
    within a factor 2 of that."""
    spreads = []
    for beta in (0.0, 0.5, 1.0, 2.0):
        devices = generate_fedprox_synthetic(1.0, beta, False, np.random.default_rng(21))
        centres = np.array([x.astype(np.float64).mean() for x, _ in devices])
        spreads.append(centres.std())
        expected = np.sqrt(beta**2 + 1 / 60)
        assert expected / 2 <= spreads[-1] <= 2 * expected
    assert spreads == sorted(spreads)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": -1.0}, "alpha=-1.0"),
        ({"beta": float("nan")}, "beta=nan"),
        ({"num_devices": 0}, "num_devices=0"),
        ({"num_classes": 1}, "num_classes=1"),
        ({"dim": 2.5}, "dim=2.5"),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs, match):
    args = {"alpha": 1.0, "beta": 1.0, "iid": False, "rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_fedprox_synthetic(**args)


def test_split_devices_matches_reference_split():
    """Per device: shuffle, first int(0.9 * n) to train (the reference's main()); our shuffle is
    rng.permutation, device by device."""
    devices = generate_fedprox_synthetic(1.0, 1.0, False, np.random.default_rng(0))
    train, test = split_devices(devices, np.random.default_rng(1))
    rng = np.random.default_rng(1)
    for (x, y), (xtr, ytr), (xte, yte) in zip(devices, train, test, strict=True):
        n = len(y)
        order = rng.permutation(n)
        n_train = int(0.9 * n)
        assert len(ytr) == n_train and len(yte) == n - n_train and len(yte) >= 1
        np.testing.assert_array_equal(xtr, x[order[:n_train]])
        np.testing.assert_array_equal(yte, y[order[n_train:]])
        # a partition of the device's samples
        both = np.concatenate([xtr, xte])
        np.testing.assert_array_equal(both[np.lexsort(both.T)], x[np.lexsort(x.T)])
    with pytest.raises(ValueError, match="train_fraction=1.0"):
        split_devices(devices, np.random.default_rng(1), train_fraction=1.0)


# --------------------------------------------------------------------------------------------
# LEAF


def _femnist_image(seed: int) -> list[float]:
    """784 grey levels / 255, as LEAF's data_to_json.py writes them."""
    return (np.random.default_rng(seed).integers(0, 256, 784) / 255).tolist()


def _write(path: Path, users: list[str], user_data: dict, **extra) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    num_samples = [len(user_data[u]["y"]) for u in users]
    path.write_text(json.dumps({"users": users, "num_samples": num_samples, "user_data": user_data, **extra}))


def _femnist_tree(root: Path) -> dict:
    """Two files per split, users split across them and listed out of order; returns the raw data."""
    raw = {
        "f_writer_b": ([_femnist_image(1), _femnist_image(2), _femnist_image(3)], [0, 61, 35]),
        "f_writer_a": ([_femnist_image(4), _femnist_image(5)], [10, 9]),
        "f_writer_c": ([_femnist_image(6), _femnist_image(7)], [36, 1]),
    }
    split = {"f_writer_b": 2, "f_writer_a": 1, "f_writer_c": 1}

    def part(users, which):
        data = {}
        for u in users:
            x, y = raw[u]
            k = split[u]
            data[u] = {"x": x[:k], "y": y[:k]} if which == "train" else {"x": x[k:], "y": y[k:]}
        return data

    _write(
        root / "train" / "all_data_1_train_9.json",
        ["f_writer_c", "f_writer_b"],
        part(["f_writer_c", "f_writer_b"], "train"),
    )
    _write(root / "train" / "all_data_0_train_9.json", ["f_writer_a"], part(["f_writer_a"], "train"))
    _write(
        root / "test" / "all_data_1_test_9.json",
        ["f_writer_c", "f_writer_b"],
        part(["f_writer_c", "f_writer_b"], "test"),
    )
    _write(root / "test" / "all_data_0_test_9.json", ["f_writer_a"], part(["f_writer_a"], "test"))
    return {u: (raw[u], split[u]) for u in raw}


def test_leaf_femnist_per_user_arrays_and_order(tmp_path):
    raw = _femnist_tree(tmp_path)
    data = read_leaf(tmp_path, "femnist")
    assert data.users == ("f_writer_a", "f_writer_b", "f_writer_c")
    assert data.num_classes == 62 and data.kind == "femnist"
    for i, user in enumerate(data.users):
        (x, y), k = raw[user]
        xtr, ytr = data.train[i]
        xte, yte = data.test[i]
        assert xtr.dtype == np.float32 and xtr.shape == (k, 1, 28, 28)
        assert ytr.dtype == np.int64 and ytr.tolist() == y[:k]
        assert yte.tolist() == y[k:] and xte.shape == (len(x) - k, 1, 28, 28)
        # row-major 28x28: pixel (r, c) is x[r * 28 + c]
        np.testing.assert_array_equal(xtr[0, 0, 2, 5], np.float32(x[0][2 * 28 + 5]))
        np.testing.assert_array_equal(xte.reshape(len(x) - k, 784), np.asarray(x[k:], dtype=np.float32))
    x, y, idx = data.union("train")
    assert x.shape == (4, 1, 28, 28) and y.tolist() == [10, 0, 61, 36]
    assert [i.tolist() for i in idx] == [[0], [1, 2], [3]]
    x, y, idx = data.union("test")
    assert y.tolist() == [9, 35, 1] and [i.tolist() for i in idx] == [[0], [1], [2]]
    np.testing.assert_array_equal(x[idx[1]], data.test[1][0])


def test_leaf_shakespeare_decoding(tmp_path):
    line = "To be, or not to be: that is the question:\nWhether 'tis nobler in the mind to suffer"
    assert len(line) >= 81
    xs = [line[i : i + 80] for i in range(2)]
    ys = [line[80], line[81]]
    extra = {"hierarchies": ["HAMLET"]}
    _write(tmp_path / "train" / "a.json", ["HAMLET_HAMLET"], {"HAMLET_HAMLET": {"x": xs[:1], "y": ys[:1]}}, **extra)
    _write(tmp_path / "train" / "b.json", ["HAMLET_OPHELIA"], {"HAMLET_OPHELIA": {"x": [" " * 80], "y": ["\n"]}})
    _write(tmp_path / "test" / "a.json", ["HAMLET_HAMLET"], {"HAMLET_HAMLET": {"x": xs[1:], "y": ys[1:]}}, **extra)
    _write(tmp_path / "test" / "b.json", ["HAMLET_OPHELIA"], {"HAMLET_OPHELIA": {"x": ["}" * 80], "y": ["}"]}})
    data = read_leaf(tmp_path, "shakespeare")
    assert data.num_classes == 80 == len(ALL_LETTERS)
    assert data.users == ("HAMLET_HAMLET", "HAMLET_OPHELIA")
    x, y = data.train[0]
    assert x.dtype == np.int64 and x.shape == (1, 80) and y.shape == (1,)
    assert "".join(ALL_LETTERS[i] for i in x[0]) == xs[0]
    assert ALL_LETTERS[y[0]] == ys[0]
    assert x[0, 0] == ALL_LETTERS.index("T") == 44 and x[0, 2] == 1  # ' ' is index 1
    assert data.train[1][0].tolist() == [[1] * 80] and data.train[1][1].tolist() == [0]  # '\n' is index 0
    assert data.test[1][0].tolist() == [[79] * 80] and data.test[1][1].tolist() == [79]  # '}' is the last


def test_leaf_alphabet_is_leafs():
    assert ALL_LETTERS == "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
    assert len(set(ALL_LETTERS)) == 80


def test_leaf_user_only_in_train_and_dropped_user_data(tmp_path):
    """LEAF's split_data.py leaves an empty user_data entry for users it dropped; it is skipped. A
    user with no test file entry gets empty test arrays."""
    img = _femnist_image(0)
    _write(
        tmp_path / "train" / "t.json",
        ["u1", "u2"],
        {"u1": {"x": [img], "y": [3]}, "u2": {"x": [img], "y": [4]}, "dropped": {"x": [], "y": []}},
    )
    _write(tmp_path / "test" / "t.json", ["u1"], {"u1": {"x": [img], "y": [5]}})
    data = read_leaf(tmp_path, "femnist")
    assert data.users == ("u1", "u2")
    assert data.test[1][0].shape == (0, 1, 28, 28) and data.test[1][1].shape == (0,)


def _minimal(tmp_path: Path, train: dict | str, test: dict | None = None) -> None:
    img = _femnist_image(0)
    ok = {"users": ["u"], "num_samples": [1], "user_data": {"u": {"x": [img], "y": [1]}}}
    (tmp_path / "train").mkdir(exist_ok=True)
    (tmp_path / "test").mkdir(exist_ok=True)
    (tmp_path / "train" / "t.json").write_text(train if isinstance(train, str) else json.dumps(train))
    (tmp_path / "test" / "t.json").write_text(json.dumps(ok if test is None else test))


def _img():
    return _femnist_image(0)


@pytest.mark.parametrize(
    ("train", "test", "match"),
    [
        ("{not json", None, r"train/t\.json: not JSON"),
        ("[1, 2]", None, r"train/t\.json: not a LEAF file: top level is a list"),
        ({"users": ["u"], "user_data": {}}, None, r"train/t\.json: not a LEAF file: missing key 'num_samples'"),
        (
            {"users": ["u"], "num_samples": [1, 2], "user_data": {"u": {"x": [], "y": []}}},
            None,
            r"train/t\.json: not a LEAF file: 'num_samples' has 2 entries for 1 users",
        ),
        (
            {"users": ["u"], "num_samples": [2], "user_data": {"u": {"x": [_img()], "y": [1]}}},
            None,
            r"train/t\.json: user 'u': num_samples says 2 but user_data has 1 samples",
        ),
        (
            {"users": ["u"], "num_samples": [1], "user_data": {"u": {"x": [_img(), _img()], "y": [1]}}},
            None,
            r"train/t\.json: user 'u' has 2 x but 1 y",
        ),
        (
            {"users": ["u"], "num_samples": [1], "user_data": {}},
            None,
            r"train/t\.json: user 'u' has no 'x' and 'y' lists in 'user_data'",
        ),
        (
            {"users": ["u"], "num_samples": [1], "user_data": {"u": {"x": [[0.5] * 10], "y": [1]}}},
            None,
            r"train/t\.json: user 'u': sample 0: x has 10 values, expected a list of 784",
        ),
        (
            {"users": ["u"], "num_samples": [1], "user_data": {"u": {"x": [_img()], "y": [62]}}},
            None,
            r"train/t\.json: user 'u': label 62 is not a class id in 0\.\.61",
        ),
        (
            {"users": ["u"], "num_samples": [1], "user_data": {"u": {"x": [[2.0] * 784], "y": [1]}}},
            None,
            r"train/t\.json: user 'u': pixel values outside \[0, 1\]",
        ),
        (
            None,
            {"users": ["u", "v"], "num_samples": [1, 1], "user_data": {k: {"x": [_img()], "y": [1]} for k in "uv"}},
            r"test/t\.json: user 'v' is in test but in no train file",
        ),
    ],
)
def test_leaf_errors_name_the_file_and_the_problem(tmp_path, train, test, match):
    ok = {"users": ["u"], "num_samples": [1], "user_data": {"u": {"x": [_img()], "y": [1]}}}
    _minimal(tmp_path, ok if train is None else train, test)
    with pytest.raises(ValueError, match=match) as info:
        read_leaf(tmp_path, "femnist")
    assert "\n" not in str(info.value)


def test_leaf_shakespeare_errors(tmp_path):
    def run(x, y):
        _minimal(tmp_path, {"users": ["u"], "num_samples": [1], "user_data": {"u": {"x": [x], "y": [y]}}})
        with pytest.raises(ValueError) as info:
            read_leaf(tmp_path, "shakespeare")
        assert "\n" not in str(info.value) and "train/t.json" in str(info.value)
        return str(info.value)

    assert "x has 79 characters, expected a string of 80" in run("a" * 79, "b")
    assert "y is 'bc', expected one character" in run("a" * 80, "bc")
    assert "x has character '$', not in LEAF's ALL_LETTERS" in run("a" * 79 + "$", "b")
    assert "y has character 'é'" in run("a" * 80, "é")


def test_leaf_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        read_leaf(tmp_path / "missing", "femnist")
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match=r"test: no such folder \(LEAF layout"):
        read_leaf(tmp_path, "femnist")
    (tmp_path / "test").mkdir()
    with pytest.raises(ValueError, match=r"train: no \.json files"):
        read_leaf(tmp_path, "femnist")
    with pytest.raises(ValueError, match="kind='mnist'"):
        read_leaf(tmp_path, "mnist")


def test_leaf_user_in_two_files_of_a_split(tmp_path):
    img = _femnist_image(0)
    one = {"u": {"x": [img], "y": [1]}}
    _write(tmp_path / "train" / "a.json", ["u"], one)
    _write(tmp_path / "train" / "b.json", ["u"], one)
    _write(tmp_path / "test" / "a.json", ["u"], one)
    with pytest.raises(ValueError, match=r"train/b\.json: user 'u' is also in .*train/a\.json"):
        read_leaf(tmp_path, "femnist")
