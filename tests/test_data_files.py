"""The dataset file readers (fedbench/data/files.py) on tiny files in the real on-disk formats.

Every fixture file is written here, byte for byte in its real format and in torchvision's layout
(IDX with struct, CIFAR batches as Python-2-era pickles, SVHN as MATLAB v5 via scipy), and read
back through the real readers. Nothing is downloaded: the download plan is checked against
torchvision's own URLs and md5s, and executed only on copies served from a loopback HTTP server.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from fedbench.data import download as download_cli
from fedbench.data import files
from fedbench.data.files import (
    DatasetFileCorrupt,
    DatasetFilesMissing,
    data_root,
    download_plan,
    load_cifar,
    load_mnist_like,
    load_svhn,
    read_idx,
    run_download_plan,
)

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


# ------------------------------------------------------------------------------------------
# Writers of the real formats
# ------------------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr)
    head = struct.pack(">BBBB", 0, 0, IDX_CODES[arr.dtype.type], arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


class Py2Pickler(pickle._Pickler):
    """Writes pickles as Python 2 did for the CIFAR files: every str (dict keys, the array's raw
    data, dtype codes) as a py2 ``str`` (BINSTRING), which ``encoding="bytes"`` loads as bytes."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        # Not memoized: the memo is keyed by id() and short bytes objects are shared singletons.

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1.x (the files' era) lived at numpy.core; numpy 2 still loads that name.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_batch(x_nchw: np.ndarray, labels, label_key: str) -> dict:
    n = len(x_nchw)
    entry = {"batch_label": "training batch 1 of 5", "data": x_nchw.reshape(n, 3072), label_key: list(labels)}
    entry["filenames"] = [f"img_{i}.png" for i in range(n)]
    if label_key == "fine_labels":
        entry["coarse_labels"] = [int(v) % 20 for v in labels]
    return entry


def rng_images(seed: int, shape) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def write_mnist(root: Path, folder: str = "MNIST", prefix=("train", "t10k"), n=(5, 3), classes=10, gz=(False, True)):
    """MNIST-style files; returns the arrays exactly as stored (images as in the file)."""
    raw = root / folder / "raw"
    stored = {}
    for i, (part, count, zipped) in enumerate(zip(prefix, n, gz)):
        x = rng_images(10 + i, (count, 28, 28))
        y = (np.arange(count) * 7 % classes).astype(np.uint8)
        write_idx(raw / f"{part}-images-idx3-ubyte", x, gz=zipped)
        write_idx(raw / f"{part}-labels-idx1-ubyte", y, gz=zipped)
        stored[part] = (x, y)
    return stored


def write_cifar10(root: Path, per_batch: int = 2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x = rng_images(100 + i, (per_batch, 3, 32, 32))
        y = [(i * per_batch + j) % 10 for j in range(per_batch)]
        (folder / fname).write_bytes(py2_pickle(cifar_batch(x, y, "labels")))
        xs.append(x)
        ys.append(y)
    (folder / "batches.meta").write_bytes(py2_pickle({"label_names": ["airplane"] * 10, "num_vis": 3072}))
    return xs, ys


def write_svhn(root: Path, n=(4, 3)):
    folder = root / "svhn"
    folder.mkdir(parents=True)
    stored = {}
    for i, (fname, count) in enumerate([("train_32x32.mat", n[0]), ("test_32x32.mat", n[1])]):
        x_hwcn = rng_images(200 + i, (32, 32, 3, count))
        y = (np.arange(count) % 10 + 1).astype(np.uint8).reshape(count, 1)  # 1..10, 10 is the digit 0
        scipy.io.savemat(folder / fname, {"X": x_hwcn, "y": y})
        stored[fname] = (x_hwcn, y)
    return stored


def one_line_with(err: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg
    return msg


# ------------------------------------------------------------------------------------------
# data_root
# ------------------------------------------------------------------------------------------


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FEDBENCH_DATA", raising=False)
    assert data_root(None) == tmp_path / "home" / ".cache" / "fedbench" / "data"
    monkeypatch.setenv("FEDBENCH_DATA", "")  # empty counts as unset
    assert data_root(None) == tmp_path / "home" / ".cache" / "fedbench" / "data"
    monkeypatch.setenv("FEDBENCH_DATA", str(tmp_path / "env"))
    assert data_root(None) == tmp_path / "env"
    assert data_root("") == tmp_path / "env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_root("~/d") == tmp_path / "home" / "d"
    monkeypatch.setenv("FEDBENCH_DATA", "~/from-env")
    assert data_root(None) == tmp_path / "home" / "from-env"


# ------------------------------------------------------------------------------------------
# IDX
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_read_idx_every_type_code(tmp_path, dtype, gz):
    values = np.array([[0, 1, -2, 100], [-128, 127, 3, 5], [7, 0, 1, 2]], dtype=np.float64)
    if dtype == np.uint8:
        values = np.abs(values) + 100  # 100..228
    arr = values.astype(dtype)
    if np.issubdtype(dtype, np.floating):
        arr = arr * np.array(1.5, dtype=dtype)
    if dtype in (np.int16, np.int32):
        arr[0, 0] = np.iinfo(dtype).min
        arr[0, 1] = np.iinfo(dtype).max
    path = write_idx(tmp_path / "a-idx2", arr, gz=gz)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == (3, 4)
    np.testing.assert_array_equal(out, arr)


def test_read_idx_real_mnist_magic_numbers(tmp_path):
    # MNIST's documented magic numbers: 2051 (0x00000803) for images, 2049 (0x00000801) for labels.
    imgs = write_idx(tmp_path / "i", np.zeros((2, 28, 28), np.uint8))
    labels = write_idx(tmp_path / "l", np.array([3, 9], np.uint8))
    assert struct.unpack(">IIII", imgs.read_bytes()[:16]) == (2051, 2, 28, 28)
    assert struct.unpack(">II", labels.read_bytes()[:8]) == (2049, 2)
    assert read_idx(imgs).shape == (2, 28, 28)
    assert read_idx(labels).tolist() == [3, 9]


def test_read_idx_gzip_is_recognised_by_content(tmp_path):
    # torchvision's download leaves .gz files; a gzip file is recognised by its magic bytes.
    path = tmp_path / "renamed-idx1-ubyte"
    path.write_bytes(gzip.compress(idx_bytes(np.array([1, 2, 3], np.uint8))))
    assert read_idx(path).tolist() == [1, 2, 3]


def corrupt_cases():
    good = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    huge = struct.pack(">BBBB3I", 0, 0, 8, 3, 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"abc"
    huge_shape = "x".join([str(2**32 - 1)] * 3)
    return {
        "bad_magic": (b"\x12\x34" + good[2:], "bad magic 0x1234"),
        "unknown_type": (good[:2] + b"\x07" + good[3:], "unknown IDX type code 0x07"),
        "short": (good[:3], "truncated"),
        "short_header": (good[:9], "truncated header"),
        "truncated_data": (good[:-5], "size mismatch: the header says 2x3x4 uint8 (24 bytes of data), found 19"),
        "extra_data": (good + b"\0\0", "size mismatch: the header says 2x3x4 uint8 (24 bytes of data), found 26"),
        "truncated_gzip": (gzip.compress(good)[:-12], "damaged gzip data"),
        # Damaged sizes must not make the reader allocate them: the file (or gzip stream) is 3 bytes.
        "huge_sizes": (huge, f"the header says {huge_shape} uint8 ({(2**32 - 1) ** 3} bytes of data), found 3"),
        "huge_sizes_gzip": (gzip.compress(huge), "found 3"),
        "gzip_of_garbage": (gzip.compress(b"hello world, not idx"), "bad magic"),
    }


@pytest.mark.parametrize("case", list(corrupt_cases()))
def test_read_idx_corrupt_files_one_line_naming_the_file(tmp_path, case):
    data, expected = corrupt_cases()[case]
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DatasetFileCorrupt) as err:
        read_idx(path)
    msg = one_line_with(err, str(path), expected)
    assert msg.startswith(f"{path}: ")


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetFilesMissing) as err:
        read_idx(tmp_path / "nope")
    one_line_with(err, str(tmp_path / "nope"))


# ------------------------------------------------------------------------------------------
# MNIST, Fashion-MNIST, EMNIST
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_like_reads_torchvision_layout(tmp_path, name, folder):
    stored = write_mnist(tmp_path, folder)  # train files plain, test files only as .gz
    (x_tr, y_tr), (x_te, y_te) = stored["train"], stored["t10k"]
    x_tr[1, 3, 20] = 250  # a known pixel at (row 3, col 20) of image 1; rewrite the file with it
    write_idx(tmp_path / folder / "raw" / "train-images-idx3-ubyte", x_tr)

    xa, ya, xb, yb, k = load_mnist_like(tmp_path, name)
    assert k == 10
    assert xa.shape == (5, 1, 28, 28) and xb.shape == (3, 1, 28, 28)
    assert xa.dtype == np.uint8 and ya.dtype == np.int64 and yb.dtype == np.int64
    assert xa[1, 0, 3, 20] == 250  # not transposed
    np.testing.assert_array_equal(xa[:, 0], x_tr)
    np.testing.assert_array_equal(xb[:, 0], x_te)
    np.testing.assert_array_equal(ya, y_tr)
    np.testing.assert_array_equal(yb, y_te)


def test_mnist_prefers_the_unpacked_file_beside_its_gz(tmp_path):
    # torchvision's download leaves both foo.gz and foo; the unpacked one is read.
    stored = write_mnist(tmp_path, gz=(False, False))
    write_idx(tmp_path / "MNIST/raw/train-labels-idx1-ubyte", np.zeros(5, np.uint8), gz=True)
    _, y, _, _, _ = load_mnist_like(tmp_path, "mnist")
    np.testing.assert_array_equal(y, stored["train"][1])


@pytest.mark.parametrize("split,classes", [("balanced", 47), ("byclass", 62)])
def test_emnist_is_returned_upright(tmp_path, split, classes):
    upright = rng_images(5, (4, 28, 28))
    upright[2] = 0
    upright[2, 3:25, 6] = 255  # a vertical bar at column 6 of image 2, like a "1"
    stored = upright.transpose(0, 2, 1)  # EMNIST's files hold each image transposed
    raw = tmp_path / "EMNIST" / "raw"
    y = np.array([0, classes - 1, 10, 36], np.uint8)  # labels as stored: 0-based, no shift
    write_idx(raw / f"emnist-{split}-train-images-idx3-ubyte", stored)
    write_idx(raw / f"emnist-{split}-train-labels-idx1-ubyte", y)
    write_idx(raw / f"emnist-{split}-test-images-idx3-ubyte", stored[:2], gz=True)
    write_idx(raw / f"emnist-{split}-test-labels-idx1-ubyte", y[:2], gz=True)

    xa, ya, xb, yb, k = load_mnist_like(tmp_path, "emnist", split)
    assert k == classes
    assert xa.shape == (4, 1, 28, 28) and xa.dtype == np.uint8 and xa.flags.c_contiguous
    np.testing.assert_array_equal(xa[:, 0], upright)
    assert xa[2, 0, 10, 6] == 255 and xa[2, 0, 6, 10] == 0
    np.testing.assert_array_equal(xb[:, 0], upright[:2])
    assert ya.tolist() == y.tolist() and yb.tolist() == y[:2].tolist() and ya.dtype == np.int64


def test_mnist_like_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_mnist_like(tmp_path, "emnist")
    with pytest.raises(ValueError, match="split"):
        load_mnist_like(tmp_path, "emnist", "letters")
    with pytest.raises(ValueError, match="no splits"):
        load_mnist_like(tmp_path, "mnist", "balanced")
    with pytest.raises(ValueError, match="unknown"):
        load_mnist_like(tmp_path, "kmnist")


def test_mnist_missing_files_message(tmp_path):
    with pytest.raises(DatasetFilesMissing) as err:
        load_mnist_like(tmp_path, "mnist")
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    assert str(err.value) == (
        f"mnist: no training images at {path}(.gz); "
        f"get them with: python -m fedbench.data.download mnist --root {tmp_path}"
    )
    write_mnist(tmp_path)
    (tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetFilesMissing) as err:
        load_mnist_like(tmp_path, "mnist")
    one_line_with(err, "mnist: no test labels at", str(tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte(.gz)"))


def test_emnist_and_fashion_missing_messages(tmp_path):
    with pytest.raises(DatasetFilesMissing) as err:
        load_mnist_like(tmp_path, "emnist", "byclass")
    one_line_with(
        err,
        "emnist byclass: no training images at",
        str(tmp_path / "EMNIST/raw/emnist-byclass-train-images-idx3-ubyte(.gz)"),
        f"python -m fedbench.data.download emnist --root {tmp_path}",
    )
    root = tmp_path / "with space"
    with pytest.raises(DatasetFilesMissing) as err:
        load_mnist_like(root, "fashion_mnist")
    one_line_with(err, str(root / "FashionMNIST/raw/train-images-idx3-ubyte(.gz)"), f"--root '{root}'")


def test_mnist_corrupt_files_messages(tmp_path):
    write_mnist(tmp_path)
    images = tmp_path / "MNIST/raw/train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DatasetFileCorrupt) as err:
        load_mnist_like(tmp_path, "mnist")
    one_line_with(err, f"mnist: {images}: size mismatch", "python -m fedbench.data.download mnist", "--force")

    write_mnist(tmp_path)
    labels = tmp_path / "MNIST/raw/train-labels-idx1-ubyte"
    write_idx(labels, np.array([1, 2, 3, 4], np.uint8))  # 4 labels for 5 images
    with pytest.raises(DatasetFileCorrupt) as err:
        load_mnist_like(tmp_path, "mnist")
    one_line_with(err, str(labels), "4 labels for 5 images")

    write_idx(labels, np.array([1, 2, 10, 4, 0], np.uint8))
    with pytest.raises(DatasetFileCorrupt) as err:
        load_mnist_like(tmp_path, "mnist")
    one_line_with(err, str(labels), "label 10 out of range for mnist's 10 classes")

    write_idx(labels, np.zeros((5, 2), np.uint8))
    with pytest.raises(DatasetFileCorrupt) as err:
        load_mnist_like(tmp_path, "mnist")
    one_line_with(err, str(labels), "expected 1-dimensional uint8 labels, found 2-dimensional uint8")

    write_idx(labels, np.zeros(5, np.uint8))
    write_idx(images, np.zeros((5, 28, 28), np.int32))
    with pytest.raises(DatasetFileCorrupt) as err:
        load_mnist_like(tmp_path, "mnist")
    one_line_with(err, str(images), "expected 3-dimensional uint8 images, found 3-dimensional int32")


def test_emnist_byclass_label_62_is_out_of_range(tmp_path):
    write_mnist(tmp_path, "EMNIST", prefix=("emnist-byclass-train", "emnist-byclass-test"), classes=62)
    labels = tmp_path / "EMNIST/raw/emnist-byclass-train-labels-idx1-ubyte"
    write_idx(labels, np.array([0, 61, 62, 1, 2], np.uint8))
    with pytest.raises(DatasetFileCorrupt) as err:
        load_mnist_like(tmp_path, "emnist", "byclass")
    one_line_with(err, "emnist byclass: ", str(labels), "label 62 out of range for emnist byclass's 62 classes")


# ------------------------------------------------------------------------------------------
# CIFAR
# ------------------------------------------------------------------------------------------


def test_cifar10_pickles(tmp_path):
    xs, ys = write_cifar10(tmp_path)
    xa, ya, xb, yb, k = load_cifar(tmp_path, "cifar10")
    assert k == 10
    assert xa.shape == (10, 3, 32, 32) and xb.shape == (2, 3, 32, 32)
    assert xa.dtype == np.uint8 and ya.dtype == np.int64
    np.testing.assert_array_equal(xa, np.concatenate(xs[:5]))  # batches 1..5 in order
    np.testing.assert_array_equal(xb, xs[5])
    assert ya.tolist() == sum(ys[:5], []) and yb.tolist() == ys[5]
    # The planes: row j of b"data" is R (1024 values, row-major 32x32), then G, then B.
    raw = pickle.loads((tmp_path / "cifar-10-batches-py/data_batch_3").read_bytes(), encoding="bytes")
    assert set(raw) == {b"batch_label", b"data", b"labels", b"filenames"}
    row = raw[b"data"][1]
    for c, r, col in [(0, 0, 0), (0, 5, 17), (1, 31, 2), (2, 12, 30)]:
        assert xa[2 * 2 + 1, c, r, col] == row[c * 1024 + r * 32 + col]


def test_cifar100_pickles(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    x_train, x_test = rng_images(1, (3, 3, 32, 32)), rng_images(2, (2, 3, 32, 32))
    x_train[0, 2, 31, 0] = 7  # blue plane, bottom-left pixel
    (folder / "train").write_bytes(py2_pickle(cifar_batch(x_train, [99, 0, 42], "fine_labels")))
    (folder / "test").write_bytes(py2_pickle(cifar_batch(x_test, [5, 98], "fine_labels")))
    (folder / "meta").write_bytes(py2_pickle({"fine_label_names": ["apple"] * 100, "coarse_label_names": ["x"] * 20}))

    xa, ya, xb, yb, k = load_cifar(tmp_path, "cifar100")
    assert k == 100
    np.testing.assert_array_equal(xa, x_train)
    np.testing.assert_array_equal(xb, x_test)
    assert xa[0, 2, 31, 0] == 7
    assert ya.tolist() == [99, 0, 42] and yb.tolist() == [5, 98]  # the fine labels, not the coarse


def test_cifar_missing_messages(tmp_path):
    with pytest.raises(DatasetFilesMissing) as err:
        load_cifar(tmp_path, "cifar100")
    assert str(err.value) == (
        f"cifar100: no training data at {tmp_path / 'cifar-100-python' / 'train'}; "
        f"get them with: python -m fedbench.data.download cifar100 --root {tmp_path}"
    )
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py/data_batch_3").unlink()
    with pytest.raises(DatasetFilesMissing) as err:
        load_cifar(tmp_path, "cifar10")
    one_line_with(err, f"cifar10: no training batch 3 at {tmp_path / 'cifar-10-batches-py/data_batch_3'}")
    with pytest.raises(ValueError, match="unknown CIFAR"):
        load_cifar(tmp_path, "cifar20")


def test_cifar_corrupt_messages(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py/data_batch_2"
    good = path.read_bytes()

    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetFileCorrupt) as err:
        load_cifar(tmp_path, "cifar10")
    one_line_with(err, f"cifar10: {path}: cannot unpickle", "--force")

    x = rng_images(0, (2, 3, 32, 32))
    path.write_bytes(py2_pickle(cifar_batch(x, [1, 2], "fine_labels")))  # a CIFAR-100 file in CIFAR-10's place
    with pytest.raises(DatasetFileCorrupt) as err:
        load_cifar(tmp_path, "cifar10")
    one_line_with(err, str(path), "no b'labels' entry")

    path.write_bytes(py2_pickle({"data": x.reshape(2, -1)[:, :3000], "labels": [1, 2]}))
    with pytest.raises(DatasetFileCorrupt) as err:
        load_cifar(tmp_path, "cifar10")
    one_line_with(err, str(path), "N x 3072 uint8", "(2, 3000)")

    path.write_bytes(py2_pickle({"data": x.reshape(2, -1), "labels": [1, 2, 3]}))
    with pytest.raises(DatasetFileCorrupt) as err:
        load_cifar(tmp_path, "cifar10")
    one_line_with(err, str(path), "for 2 images")

    path.write_bytes(py2_pickle({"data": x.reshape(2, -1), "labels": [1, 10]}))
    with pytest.raises(DatasetFileCorrupt) as err:
        load_cifar(tmp_path, "cifar10")
    one_line_with(err, str(path), "label 10 out of range")


# ------------------------------------------------------------------------------------------
# SVHN
# ------------------------------------------------------------------------------------------


def test_svhn_mat(tmp_path):
    stored = write_svhn(tmp_path)
    x_hwcn, y = stored["train_32x32.mat"]
    xa, ya, xb, yb, k = load_svhn(tmp_path)
    assert k == 10
    assert xa.shape == (4, 3, 32, 32) and xb.shape == (3, 3, 32, 32)
    assert xa.dtype == np.uint8 and ya.dtype == np.int64 and xa.flags.c_contiguous
    for r, c, ch, i in [(0, 0, 0, 0), (3, 29, 1, 2), (31, 4, 2, 3)]:
        assert xa[i, ch, r, c] == x_hwcn[r, c, ch, i]  # X[row, col, channel, image]
    np.testing.assert_array_equal(xa, x_hwcn.transpose(3, 2, 0, 1))
    assert y[:, 0].tolist() == [1, 2, 3, 4]
    assert ya.tolist() == [1, 2, 3, 4]
    assert yb.tolist() == [1, 2, 3]
    # Label 10 is the digit 0.
    folder = tmp_path / "svhn"
    scipy.io.savemat(folder / "test_32x32.mat", {"X": x_hwcn[..., :3], "y": np.array([[10], [1], [10]], np.uint8)})
    assert load_svhn(tmp_path)[3].tolist() == [0, 1, 0]
    # A y saved as double (MATLAB's default type) is accepted when its values are integers.
    scipy.io.savemat(folder / "test_32x32.mat", {"X": x_hwcn[..., :2], "y": np.array([[10.0], [9.0]])})
    assert load_svhn(tmp_path)[3].tolist() == [0, 9]


def test_svhn_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetFilesMissing) as err:
        load_svhn(tmp_path)
    assert str(err.value) == (
        f"svhn: no training images at {tmp_path / 'svhn' / 'train_32x32.mat'}; "
        f"get them with: python -m fedbench.data.download svhn --root {tmp_path}"
    )
    write_svhn(tmp_path)
    path = tmp_path / "svhn" / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetFileCorrupt) as err:
        load_svhn(tmp_path)
    one_line_with(err, f"svhn: {path}: not a readable MATLAB v5 file", "--force")

    path.write_bytes(b"garbage" * 50)
    with pytest.raises(DatasetFileCorrupt) as err:
        load_svhn(tmp_path)
    one_line_with(err, str(path), "not a readable MATLAB v5 file")

    scipy.io.savemat(path, {"images": np.zeros((32, 32, 3, 1), np.uint8), "y": np.ones((1, 1), np.uint8)})
    with pytest.raises(DatasetFileCorrupt) as err:
        load_svhn(tmp_path)
    one_line_with(err, str(path), "no variable 'X'")

    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[3], [11]], np.uint8)})
    with pytest.raises(DatasetFileCorrupt) as err:
        load_svhn(tmp_path)
    one_line_with(err, str(path), "label 11 out of range")

    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[3]], np.uint8)})
    with pytest.raises(DatasetFileCorrupt) as err:
        load_svhn(tmp_path)
    one_line_with(err, str(path), "y should hold 2 labels")

    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[3.0], [1.5]])})
    with pytest.raises(DatasetFileCorrupt) as err:
        load_svhn(tmp_path)
    one_line_with(err, str(path), "non-integer labels")


# ------------------------------------------------------------------------------------------
# Download plan (never executed against the network)
# ------------------------------------------------------------------------------------------


def plan_rows(name, root):
    return [(d.url, d.md5, d.destination, d.mirrors, d.extract_to, d.gunzip_folder) for d in download_plan(name, root)]


def test_download_plan_urls_md5s_destinations(tmp_path):
    r = tmp_path
    s3, lecun = "https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"
    raw = r / "MNIST" / "raw"
    assert plan_rows("mnist", r) == [
        (s3 + f, md5, raw / f, (lecun + f,), raw, None)
        for f, md5 in [
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ]
    ]
    fashion = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    raw = r / "FashionMNIST" / "raw"
    assert plan_rows("fashion_mnist", r) == [
        (fashion + f, md5, raw / f, (), raw, None)
        for f, md5 in [
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        ]
    ]
    raw = r / "EMNIST" / "raw"
    assert plan_rows("emnist", r) == [
        (
            "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",
            "58c8d27c78d21e728a6bc7b3cc06412e",
            raw / "gzip.zip",
            (),
            raw,
            raw / "gzip",
        )
    ]
    kriz = "https://www.cs.toronto.edu/~kriz/"
    assert plan_rows("cifar10", r) == [
        (kriz + "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", r / "cifar-10-python.tar.gz", (), r, None)
    ]
    assert plan_rows("cifar100", r) == [
        (
            kriz + "cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
            r / "cifar-100-python.tar.gz",
            (),
            r,
            None,
        )
    ]
    svhn = "http://ufldl.stanford.edu/housenumbers/"
    assert plan_rows("svhn", r) == [
        (svhn + "train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373", r / "svhn/train_32x32.mat", (), None, None),
        (svhn + "test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3", r / "svhn/test_32x32.mat", (), None, None),
    ]
    with pytest.raises(ValueError, match="unknown dataset"):
        download_plan("imagenet", r)


def test_download_plan_matches_installed_torchvision(tmp_path):
    from torchvision import datasets as tvd

    for name, cls in [("mnist", tvd.MNIST), ("fashion_mnist", tvd.FashionMNIST)]:
        plan = download_plan(name, tmp_path)
        assert [(d.url, *d.mirrors) for d in plan] == [tuple(m + f for m in cls.mirrors) for f, _ in cls.resources]
        assert [(d.destination.name, d.md5) for d in plan] == [tuple(r) for r in cls.resources]
        assert {d.destination.parent for d in plan} == {tmp_path / cls.__name__ / "raw"}  # MNIST.raw_folder
    [emnist] = download_plan("emnist", tmp_path)
    assert (emnist.url, emnist.md5) == (tvd.EMNIST.url, tvd.EMNIST.md5)
    for name, cls in [("cifar10", tvd.CIFAR10), ("cifar100", tvd.CIFAR100)]:
        [d] = download_plan(name, tmp_path)
        assert (d.url, d.md5, d.destination.name) == (cls.url, cls.tgz_md5, cls.filename)
        assert files.CIFAR[name].folder == cls.base_folder
        assert files.CIFAR[name].train + files.CIFAR[name].test == tuple(f for f, _ in cls.train_list + cls.test_list)
    svhn = download_plan("svhn", tmp_path)
    assert [(d.url, d.destination.name, d.md5) for d in svhn] == [
        tuple(tvd.SVHN.split_list[s]) for s in ("train", "test")
    ]


def test_download_plan_uses_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDBENCH_DATA", str(tmp_path / "env"))
    assert download_plan("svhn")[0].destination == tmp_path / "env" / "svhn" / "train_32x32.mat"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_folder(tmp_path, monkeypatch):
    """A folder served over HTTP on the loopback interface only: (folder, base URL)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def local_copies(plan, served: tuple[Path, str], payloads: dict[str, bytes]):
    """The real plan with each URL pointed at a loopback copy of the same name (md5 of that copy)."""
    folder, base = served
    out = []
    for item in plan:
        fname = item.url.rsplit("/", 1)[1]
        (folder / fname).write_bytes(payloads[fname])
        out.append(replace(item, url=base + fname, md5=hashlib.md5(payloads[fname]).hexdigest(), mirrors=()))
    return out


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_executing_the_plan_on_local_copies_gives_the_readers_layout(tmp_path, http_folder):
    """The real plan's destinations and unpacking, fed loopback archives shaped like the real ones."""
    served, root = http_folder, tmp_path / "data"
    # MNIST: four .gz files, each unpacked beside itself.
    mnist = {
        "train-images-idx3-ubyte.gz": rng_images(1, (3, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.array([1, 2, 3], np.uint8),
        "t10k-images-idx3-ubyte.gz": rng_images(2, (2, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.array([9, 0], np.uint8),
    }
    run_download_plan(
        local_copies(download_plan("mnist", root), served, {k: gzip.compress(idx_bytes(v)) for k, v in mnist.items()})
    )
    assert (root / "MNIST/raw/train-images-idx3-ubyte").is_file()
    assert (root / "MNIST/raw/train-images-idx3-ubyte.gz").is_file()
    xa, ya, xb, yb, _ = load_mnist_like(root, "mnist")
    np.testing.assert_array_equal(xa[:, 0], mnist["train-images-idx3-ubyte.gz"])
    assert yb.tolist() == [9, 0]

    # EMNIST: gzip.zip holds gzip/emnist-<split>-....gz for every split (and mapping files).
    members = {"gzip/emnist-balanced-mapping.txt": b"0 48\n"}
    for split, n in [("balanced", 2), ("byclass", 3), ("letters", 1)]:
        for part in ("train", "test"):
            members[f"gzip/emnist-{split}-{part}-images-idx3-ubyte.gz"] = gzip.compress(
                idx_bytes(rng_images(n, (n, 28, 28)))
            )
            members[f"gzip/emnist-{split}-{part}-labels-idx1-ubyte.gz"] = gzip.compress(
                idx_bytes(np.arange(n, dtype=np.uint8))
            )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    run_download_plan(local_copies(download_plan("emnist", root), served, {"gzip.zip": buf.getvalue()}))
    assert not (root / "EMNIST/raw/gzip").exists()
    assert (root / "EMNIST/raw/emnist-letters-train-images-idx3-ubyte").is_file()
    assert load_mnist_like(root, "emnist", "byclass")[0].shape == (3, 1, 28, 28)
    assert load_mnist_like(root, "emnist", "balanced")[4] == 47

    # CIFAR-10: the tarball holds cifar-10-batches-py/...
    payload = {}
    for fname in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        payload[f"cifar-10-batches-py/{fname}"] = py2_pickle(cifar_batch(rng_images(3, (1, 3, 32, 32)), [4], "labels"))
    payload["cifar-10-batches-py/batches.meta"] = py2_pickle({"label_names": ["cat"] * 10})
    run_download_plan(local_copies(download_plan("cifar10", root), served, {"cifar-10-python.tar.gz": tar_gz(payload)}))
    xa, ya, xb, yb, k = load_cifar(root, "cifar10")
    assert xa.shape == (5, 3, 32, 32) and yb.tolist() == [4]

    # SVHN: two .mat files, no unpacking.
    mats = {}
    for fname in ("train_32x32.mat", "test_32x32.mat"):
        buf = io.BytesIO()
        scipy.io.savemat(buf, {"X": rng_images(4, (32, 32, 3, 2)), "y": np.array([[10], [3]], np.uint8)})
        mats[fname] = buf.getvalue()
    run_download_plan(local_copies(download_plan("svhn", root), served, mats))
    assert load_svhn(root)[1].tolist() == [0, 3]

    for name in ("mnist", "emnist", "cifar10", "svhn"):
        assert all(files._present(name, p) for p in files.dataset_files(name, root)), name


def test_download_dataset_skips_when_present_and_runs_the_plan_otherwise(monkeypatch, tmp_path):
    ran = []
    monkeypatch.setattr(files, "run_download_plan", lambda plan: ran.append(list(plan)))  # never the network
    write_mnist(tmp_path)
    assert files.download_dataset("mnist", tmp_path) is False and ran == []
    assert files.download_dataset("mnist", tmp_path, force=True) is True
    assert ran == [download_plan("mnist", tmp_path)]
    assert files.download_dataset("cifar100", tmp_path) is True
    assert ran[-1] == download_plan("cifar100", tmp_path)


def test_download_cli_dry_run_and_usage(capsys, tmp_path):
    assert download_cli.main(["svhn", "cifar10", "--root", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"svhn\thttp://ufldl.stanford.edu/housenumbers/train_32x32.mat\tmd5=e26dedcc434d2e4c54c9b2d4a06d8373"
        f"\t-> {tmp_path / 'svhn/train_32x32.mat'}",
        f"svhn\thttp://ufldl.stanford.edu/housenumbers/test_32x32.mat\tmd5=eb5a983be6a315427106f1b164d9cef3"
        f"\t-> {tmp_path / 'svhn/test_32x32.mat'}",
        f"cifar10\thttps://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz\tmd5=c58f30108f718f92721af3b95e74349a"
        f"\t-> {tmp_path / 'cifar-10-python.tar.gz'}",
    ]
    with pytest.raises(SystemExit) as err:
        download_cli.main(["imagenet", "--dry-run"])
    assert err.value.code == 2


def test_download_cli_reports_present_and_failed(monkeypatch, capsys, tmp_path):
    write_svhn(tmp_path)
    assert download_cli.main(["svhn", "--root", str(tmp_path)]) == 0
    assert "svhn: already present in" in capsys.readouterr().out

    def fail(name, root, force=False):
        raise files.DownloadFailed("could not download /x/gzip.zip: https://a: URLError: no route")

    monkeypatch.setattr(download_cli, "download_dataset", fail)
    assert download_cli.main(["emnist", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    prog = "python -m fedbench.data.download"
    assert err == f"{prog}: emnist: could not download /x/gzip.zip: https://a: URLError: no route\n"


def test_download_falls_back_to_mirrors_and_fails_in_one_line(tmp_path, http_folder):
    folder, base = http_folder
    data = gzip.compress(idx_bytes(np.array([1, 2], np.uint8)))
    (folder / "good.gz").write_bytes(data)
    md5 = hashlib.md5(data).hexdigest()
    dest = tmp_path / "out" / "labels-idx1-ubyte.gz"
    item = files.Download(base + "missing.gz", md5, dest, mirrors=(base + "good.gz",), extract_to=dest.parent)
    run_download_plan([item])
    assert read_idx(tmp_path / "out" / "labels-idx1-ubyte").tolist() == [1, 2]

    bad = replace(item, md5="0" * 32, destination=tmp_path / "out2" / "x.gz", mirrors=(base + "gone.gz",))
    bad = replace(bad, url=base + "good.gz")  # right file, wrong md5; then a 404
    with pytest.raises(files.DownloadFailed) as err:
        run_download_plan([bad])
    one_line_with(err, f"could not download {bad.destination}", base + "good.gz", base + "gone.gz", "404")
