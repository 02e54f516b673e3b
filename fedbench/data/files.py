"""Readers for the real on-disk formats of the image datasets, as pure functions.

Every reader takes the data root (see :func:`data_root`), reads the files in the layout that
torchvision's downloads leave (``docs/datasets.md`` lists them) and returns numpy arrays::

    x_train, y_train, x_test, y_test, num_classes

with images as ``uint8`` of shape ``(N, C, H, W)`` and labels as ``int64`` in ``[0, num_classes)``.
Nothing is normalised or converted to float here, and nothing is downloaded: a missing file raises
:class:`DatasetFilesMissing`, a damaged one :class:`DatasetFileCorrupt`, each with a one-line
message that names the file. :func:`download_dataset` (or ``python -m fedbench.data.download``)
fetches the official files into exactly this layout.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import shlex
import shutil
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CIFAR",
    "DATASET_NAMES",
    "EMNIST_SPLITS",
    "DatasetFileCorrupt",
    "DatasetFileError",
    "DatasetFilesMissing",
    "Download",
    "DownloadFailed",
    "data_root",
    "dataset_files",
    "download_dataset",
    "download_plan",
    "load_cifar",
    "load_mnist_like",
    "load_svhn",
    "read_idx",
    "run_download_plan",
]

DEFAULT_DATA_ROOT = "~/.cache/fedbench/data"
DATA_ROOT_ENV = "FEDBENCH_DATA"

# Every name the readers and the downloader know.
DATASET_NAMES = ("mnist", "fashion_mnist", "emnist", "cifar10", "cifar100", "svhn")

# torchvision's folder for each MNIST-like dataset: ``<root>/<Class name>/raw`` (MNIST.raw_folder).
_MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "emnist": "EMNIST"}
# The EMNIST splits read here and their class counts: byclass = 10 digits + 26 upper + 26 lower
# case letters; balanced merges the 15 letters whose two cases look alike (c, i, j, k, l, m, o, p,
# s, u, v, w, x, y, z) into one class each.
EMNIST_SPLITS = {"balanced": 47, "byclass": 62}


@dataclass(frozen=True)
class _CifarSpec:
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: bytes
    num_classes: int


CIFAR = {
    "cifar10": _CifarSpec(
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), b"labels", 10
    ),
    "cifar100": _CifarSpec("cifar-100-python", ("train",), ("test",), b"fine_labels", 100),
}
_SVHN_FOLDER = "svhn"
_SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


# --------------------------------------------------------------------------------------------
# Root and errors
# --------------------------------------------------------------------------------------------


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds the datasets.

    Precedence: ``root`` when given (not ``None`` and not empty), else the environment variable
    ``FEDBENCH_DATA`` when set and not empty, else ``~/.cache/fedbench/data``. A leading ``~`` is
    expanded in all three. The folder is not created and need not exist.
    """
    if root is not None and str(root) != "":
        chosen = str(root)
    else:
        chosen = os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return Path(chosen).expanduser()


class DatasetFileError(Exception):
    """Base class of the dataset file errors; the message is always one line."""


class DatasetFilesMissing(DatasetFileError):
    """A file a reader needs is not there. The message names the dataset, the path looked at and
    the command that fetches the files."""


class DatasetFileCorrupt(DatasetFileError):
    """A file is there but cannot be what it should be (truncated, bad magic, wrong shape...).
    The message names the file and what is wrong."""


class DownloadFailed(DatasetFileError):
    """A download failed at every URL tried."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _download_command(name: str, root: Path, force: bool = False) -> str:
    return f"python -m fedbench.data.download {name} --root {shlex.quote(str(root))}" + (" --force" if force else "")


def _missing(name: str, label: str, what: str, shown_path: str, root: Path) -> DatasetFilesMissing:
    return DatasetFilesMissing(f"{label}: no {what} at {shown_path}; get them with: {_download_command(name, root)}")


def _corrupt(path: Path, problem: str) -> DatasetFileCorrupt:
    return DatasetFileCorrupt(_one_line(f"{path}: {problem}"))


def _with_fix(err: DatasetFileCorrupt, label: str, name: str, root: Path) -> DatasetFileCorrupt:
    """Prefix a reader's corrupt-file error with the dataset and add how to get a fresh copy."""
    fix = _download_command(name, root, force=True)
    return DatasetFileCorrupt(f"{label}: {err}; get a fresh copy with: {fix}")


# --------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST, EMNIST)
# --------------------------------------------------------------------------------------------

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_gzip_data(f, n: int) -> bytearray:
    """Up to ``n`` bytes, read in chunks: a damaged header cannot make it allocate ``n`` at once."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(1 << 24, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _count_rest(f) -> int:
    total = 0
    while chunk := f.read(1 << 20):
        total += len(chunk)
    return total


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not, into a native-endian array.

    Layout: a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
    big-endian uint32 size per dimension, then the data, big-endian, in C order. Type codes:
    0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. A gzip file
    (recognised by its own magic bytes ``1f 8b``, whatever its name) is decompressed on the fly.
    The data must fill the sizes in the header exactly.

    Raises :class:`DatasetFilesMissing` if there is no file and :class:`DatasetFileCorrupt`
    (one line, naming the file) for a bad magic number, an unknown type code, a truncated header
    or data, trailing bytes, or damaged gzip data.
    """
    path = Path(path)
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise DatasetFilesMissing(f"no IDX file at {path}") from None
    with raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        f = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            return _parse_idx(f, path, None if compressed else os.fstat(raw.fileno()).st_size)
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            if not compressed:
                raise
            raise _corrupt(path, f"damaged gzip data ({type(e).__name__}: {e})") from None


def _parse_idx(f, path: Path, file_size: int | None) -> np.ndarray:
    """Parse an open IDX stream; ``file_size`` is the file's size if known (not for gzip)."""
    head = f.read(4)
    if len(head) < 4:
        raise _corrupt(path, f"truncated: {len(head)} bytes, shorter than the 4-byte IDX magic number")
    if head[0] != 0 or head[1] != 0:
        raise _corrupt(path, f"bad magic 0x{head.hex().upper()}: not an IDX file (its first two bytes must be zero)")
    code, ndim = head[2], head[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise _corrupt(path, f"bad magic 0x{head.hex().upper()}: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise _corrupt(path, "bad magic: the IDX header declares 0 dimensions")
    sizes_raw = f.read(4 * ndim)
    if len(sizes_raw) < 4 * ndim:
        raise _corrupt(path, f"truncated header: {ndim} dimension sizes need {4 * ndim} bytes, found {len(sizes_raw)}")
    shape = struct.unpack(f">{ndim}I", sizes_raw)
    dtype = np.dtype(_IDX_DTYPES[code])
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow on a damaged header
    described = f"{'x'.join(map(str, shape))} {dtype.newbyteorder('=').name}"
    if file_size is not None:
        found = file_size - 4 - 4 * ndim
        if found == nbytes:
            buf = bytearray(nbytes)
            found = f.readinto(buf)  # a regular file fills the buffer in one call
    else:
        buf = _read_gzip_data(f, nbytes)
        found = len(buf)
        if found == nbytes:
            found += _count_rest(f)
    if found != nbytes:
        raise _corrupt(path, f"size mismatch: the header says {described} ({nbytes} bytes of data), found {found}")
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return arr.astype(dtype.newbyteorder("=")) if dtype.itemsize > 1 else arr


def _idx_path(path: Path) -> Path | None:
    """The file itself, else its ``.gz``, else None (torchvision's download leaves both)."""
    if path.is_file():
        return path
    gz = path.with_name(path.name + ".gz")
    return gz if gz.is_file() else None


def _mnist_files(root: Path, name: str, split: str | None) -> dict[str, Path]:
    raw = root / _MNIST_FOLDERS[name] / "raw"
    if name == "emnist":
        stem = {"train": f"emnist-{split}-train", "t10k": f"emnist-{split}-test"}
    else:
        stem = {"train": "train", "t10k": "t10k"}
    return {
        "training images": raw / f"{stem['train']}-images-idx3-ubyte",
        "training labels": raw / f"{stem['train']}-labels-idx1-ubyte",
        "test images": raw / f"{stem['t10k']}-images-idx3-ubyte",
        "test labels": raw / f"{stem['t10k']}-labels-idx1-ubyte",
    }


def _check_mnist_args(name: str, split: str | None) -> None:
    if name not in _MNIST_FOLDERS:
        raise ValueError(f"unknown MNIST-like dataset {name!r}; known: {', '.join(_MNIST_FOLDERS)}")
    if name == "emnist":
        if split not in EMNIST_SPLITS:
            raise ValueError(f"emnist: split must be one of {', '.join(EMNIST_SPLITS)}; got {split!r}")
    elif split is not None:
        raise ValueError(f"{name} has no splits; got split={split!r}")


def load_mnist_like(
    root: str | os.PathLike, name: str, split: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Read MNIST, Fashion-MNIST or EMNIST from torchvision's download layout.

    ``name`` is ``mnist``, ``fashion_mnist`` or ``emnist``; ``split`` is required for EMNIST
    (``balanced``: 47 classes, ``byclass``: 62) and must be None otherwise. Files, each read as is
    or as ``<file>.gz`` (the uncompressed one first)::

        <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
        <root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
        <root>/EMNIST/raw/emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte

    Images come back as uint8 ``(N, 1, 28, 28)``, labels as int64 as stored (10 classes for
    MNIST and Fashion-MNIST; for EMNIST balanced and byclass the stored labels already start at 0).

    EMNIST's IDX files store every image transposed (rows and columns swapped, which looks
    mirrored and rotated by 90 degrees). This reader transposes H and W back, so EMNIST images
    come back upright, oriented like MNIST's. torchvision's ``EMNIST`` class (0.29) does *not*
    do this: its images are the stored, transposed ones.
    """
    _check_mnist_args(name, split)
    root = Path(root).expanduser()
    label = f"emnist {split}" if name == "emnist" else name
    num_classes = EMNIST_SPLITS[split] if name == "emnist" else 10
    found = require_files(name, root, split)
    try:
        out = []
        for part in ("training", "test"):
            x = _idx_images(found[f"{part} images"])
            y = _idx_labels(found[f"{part} labels"], num_classes, f"{label}'s")
            if len(x) != len(y):
                images = found[f"{part} images"]
                raise _corrupt(found[f"{part} labels"], f"{len(y)} labels for {len(x)} images in {images}")
            if name == "emnist":
                x = np.ascontiguousarray(x.transpose(0, 2, 1))
            out += [x[:, None], y]
    except DatasetFileCorrupt as e:
        raise _with_fix(e, label, name, root) from None
    return out[0], out[1], out[2], out[3], num_classes


def _idx_images(path: Path) -> np.ndarray:
    x = read_idx(path)
    if x.dtype != np.uint8 or x.ndim != 3:
        raise _corrupt(path, f"expected 3-dimensional uint8 images, found {x.ndim}-dimensional {x.dtype}")
    return x


def _idx_labels(path: Path, num_classes: int, owner: str) -> np.ndarray:
    y = read_idx(path)
    if y.dtype != np.uint8 or y.ndim != 1:
        raise _corrupt(path, f"expected 1-dimensional uint8 labels, found {y.ndim}-dimensional {y.dtype}")
    return _checked_labels(y.astype(np.int64), path, num_classes, owner)


def _checked_labels(y: np.ndarray, path: Path, num_classes: int, owner: str) -> np.ndarray:
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise _corrupt(path, f"label {bad} out of range for {owner} {num_classes} classes")
    return y


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (python pickles)
# --------------------------------------------------------------------------------------------


def load_cifar(root: str | os.PathLike, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Read CIFAR-10 or CIFAR-100 ("python version") from the folder its archive unpacks to.

    ``which`` is ``cifar10`` (``<root>/cifar-10-batches-py/data_batch_1`` .. ``data_batch_5``,
    ``test_batch``; labels under ``b"labels"``, 10 classes) or ``cifar100``
    (``<root>/cifar-100-python/train``, ``test``; labels under ``b"fine_labels"``, 100 classes).
    Each file is a pickled dict whose ``b"data"`` is an ``N x 3072`` uint8 array, each row an image
    as three 32 x 32 row-major planes, R then G then B, so a row reshapes to ``(3, 32, 32)``
    directly. Returns uint8 ``(N, 3, 32, 32)`` images and int64 labels, training batches in order.

    The files are read with ``pickle.load(f, encoding="bytes")``, and unpickling can run code: these
    must be the files unpacked from the official archive (which :func:`download_dataset` checks
    against its md5), the same trust torchvision places in them. No checksum of the unpacked files
    is checked here, so copies made some other way (re-saved, subset) are read too.
    """
    if which not in CIFAR:
        raise ValueError(f"unknown CIFAR dataset {which!r}; known: {', '.join(CIFAR)}")
    spec = CIFAR[which]
    root = Path(root).expanduser()
    folder = root / spec.folder
    parts = {"training": spec.train, "test": spec.test}
    require_files(which, root)
    try:
        out = []
        for files in parts.values():
            xs, ys = zip(*(_read_cifar_pickle(folder / f, spec.label_key, spec.num_classes, which) for f in files))
            out += [np.concatenate(xs) if len(xs) > 1 else xs[0], np.concatenate(ys) if len(ys) > 1 else ys[0]]
    except DatasetFileCorrupt as e:
        raise _with_fix(e, which, which, root) from None
    return out[0], out[1], out[2], out[3], spec.num_classes


def _read_cifar_pickle(path: Path, label_key: bytes, num_classes: int, which: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        try:
            entry = pickle.load(f, encoding="bytes")
        # Unpickling damaged data can raise almost anything (UnpicklingError, EOFError,
        # ValueError, KeyError, ImportError...): each means the file is not a CIFAR batch.
        except Exception as e:
            raise _corrupt(path, f"cannot unpickle ({type(e).__name__}: {e})") from None
    if not isinstance(entry, dict):
        raise _corrupt(path, f"expected a pickled dict, found {type(entry).__name__}")
    for key in (b"data", label_key):
        if key not in entry:
            keys = ", ".join(repr(k) for k in entry)
            raise _corrupt(path, f"no {key!r} entry (keys: {keys})")
    data = entry[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise _corrupt(path, f"b'data' should be an N x 3072 uint8 array, found {found}")
    try:
        y = np.asarray(entry[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise _corrupt(path, f"{label_key!r} is not a list of integers ({e})") from None
    if y.ndim != 1 or len(y) != len(data):
        raise _corrupt(path, f"{label_key!r} has shape {y.shape} for {len(data)} images")
    y = _checked_labels(y, path, num_classes, f"{which}'s")
    return np.ascontiguousarray(data).reshape(-1, 3, 32, 32), y


# --------------------------------------------------------------------------------------------
# SVHN (MATLAB .mat)
# --------------------------------------------------------------------------------------------


def load_svhn(root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Read SVHN (cropped digits) from ``<root>/svhn/train_32x32.mat`` and ``test_32x32.mat``.

    This is the folder ``torchvision.datasets.SVHN(root=<root>/svhn, split=..., download=True)``
    fills. Each file is a MATLAB v5 ``.mat`` with ``X``, uint8 of shape ``(32, 32, 3, N)`` (row,
    column, channel, image), and ``y`` of shape ``(N, 1)`` with labels 1..10, where 10 stands for
    the digit 0. Returns uint8 ``(N, 3, 32, 32)`` images and int64 labels with 10 mapped to 0, as
    torchvision does, so label ``d`` is the digit ``d``; 10 classes. The ``extra`` set is not read.
    """
    root = Path(root).expanduser()
    paths = require_files("svhn", root)
    try:
        x_train, y_train = _read_svhn_mat(paths["train"])
        x_test, y_test = _read_svhn_mat(paths["test"])
    except DatasetFileCorrupt as e:
        raise _with_fix(e, "svhn", "svhn", root) from None
    return x_train, y_train, x_test, y_test, 10


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=("X", "y"))
    # scipy raises many types for a damaged file (ValueError, TypeError, MatReadError, OSError,
    # NotImplementedError for a v7.3 file...): each means this is not a readable SVHN file.
    except Exception as e:
        raise _corrupt(path, f"not a readable MATLAB v5 file ({type(e).__name__}: {e})") from None
    for key in ("X", "y"):
        if key not in mat:
            raise _corrupt(path, f"no variable {key!r} (found: {', '.join(k for k in mat if not k.startswith('__'))})")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3:
        raise _corrupt(path, f"X should be uint8 of shape (H, W, 3, N), found {x.dtype} {x.shape}")
    if y.size != x.shape[3] or not np.issubdtype(y.dtype, np.number):
        raise _corrupt(path, f"y should hold {x.shape[3]} labels, found {y.dtype} {y.shape}")
    y = y.reshape(-1)
    labels = y.astype(np.int64)
    if not np.array_equal(labels, y):
        raise _corrupt(path, "y holds non-integer labels")
    if labels.size and (labels.min() < 0 or labels.max() > 10):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise _corrupt(path, f"label {bad} out of range: SVHN labels are 1..10 (10 is the digit 0)")
    labels[labels == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels


# --------------------------------------------------------------------------------------------
# Layout summary, download plan and download
# --------------------------------------------------------------------------------------------


def require_files(name: str, root: str | os.PathLike, split: str | None = None) -> dict[str, Path]:
    """The files the reader of ``name`` (and EMNIST ``split``) will read, by role, or
    :class:`DatasetFilesMissing` with the one-line message naming the first one absent. Reads
    nothing: the config check calls it before any run starts."""
    root = Path(root).expanduser()
    if name in _MNIST_FOLDERS:
        _check_mnist_args(name, split)
        label = f"emnist {split}" if name == "emnist" else name
        found = {}
        for what, path in _mnist_files(root, name, split).items():
            actual = _idx_path(path)
            if actual is None:
                raise _missing(name, label, what, f"{path}(.gz)", root)
            found[what] = actual
        return found
    if name in CIFAR:
        spec = CIFAR[name]
        found = {}
        for part, files in {"training": spec.train, "test": spec.test}.items():
            for i, fname in enumerate(files, 1):
                path = root / spec.folder / fname
                what = f"{part} batch {i}" if len(files) > 1 else f"{part} data"
                if not path.is_file():
                    raise _missing(name, name, what, str(path), root)
                found[what] = path
        return found
    if name == "svhn":
        paths = {part: root / _SVHN_FOLDER / fname for part, fname in _SVHN_FILES.items()}
        for part, path in paths.items():
            if not path.is_file():
                raise _missing("svhn", "svhn", f"{'training' if part == 'train' else 'test'} images", str(path), root)
        return paths
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")


def dataset_files(name: str, root: str | os.PathLike) -> list[Path]:
    """Every file the readers read for ``name`` under ``root`` (for EMNIST, of every split in
    :data:`EMNIST_SPLITS`). IDX files are named uncompressed; the readers also take ``<file>.gz``."""
    root = Path(root).expanduser()
    if name in ("mnist", "fashion_mnist"):
        return list(_mnist_files(root, name, None).values())
    if name == "emnist":
        return [p for split in EMNIST_SPLITS for p in _mnist_files(root, name, split).values()]
    if name in CIFAR:
        spec = CIFAR[name]
        return [root / spec.folder / f for f in (*spec.train, *spec.test)]
    if name == "svhn":
        return [root / _SVHN_FOLDER / f for f in _SVHN_FILES.values()]
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")


def _present(name: str, path: Path) -> bool:
    return _idx_path(path) is not None if name in _MNIST_FOLDERS else path.is_file()


@dataclass(frozen=True)
class Download:
    """One file to fetch: try ``url``, then each of ``mirrors``, until a copy with ``md5`` is saved
    at ``destination``; then unpack it into ``extract_to`` (an archive, or a ``.gz`` file
    decompressed beside it; the downloaded file is kept), and if ``gunzip_folder`` is set,
    decompress every ``.gz`` in that folder into ``extract_to`` and delete the folder."""

    url: str
    md5: str
    destination: Path
    mirrors: tuple[str, ...] = ()
    extract_to: Path | None = None
    gunzip_folder: Path | None = None


# The official URLs and md5s, as in torchvision 0.29 (torchvision/datasets/mnist.py, cifar.py,
# svhn.py); tests/test_data_files.py checks them against the installed torchvision.
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_IDX_RESOURCES = {
    "mnist": (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
    "fashion_mnist": (
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
}
_EMNIST_URL, _EMNIST_MD5 = "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip", "58c8d27c78d21e728a6bc7b3cc06412e"
_CIFAR_ARCHIVES = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
}
_SVHN_MD5 = {
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
}
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"


def download_plan(name: str, root: str | os.PathLike | None = None) -> list[Download]:
    """What :func:`download_dataset` fetches for ``name`` into ``data_root(root)``, in order.

    The result is torchvision's layout, the one the readers read: MNIST and Fashion-MNIST as four
    ``.gz`` files in ``<root>/<MNIST|FashionMNIST>/raw`` each decompressed beside itself; EMNIST as
    ``gzip.zip`` (all six splits, about 560 MB) in ``<root>/EMNIST/raw``, unpacked, its ``gzip/*.gz``
    decompressed into ``raw`` and the ``gzip`` folder removed; CIFAR as the python-version archive
    in ``<root>`` unpacked there; SVHN as the two ``.mat`` files in ``<root>/svhn``.
    """
    root = data_root(root)
    if name in _IDX_RESOURCES:
        raw = root / _MNIST_FOLDERS[name] / "raw"
        mirrors = _MNIST_MIRRORS if name == "mnist" else _FASHION_MIRRORS
        return [
            Download(mirrors[0] + fname, md5, raw / fname, tuple(m + fname for m in mirrors[1:]), extract_to=raw)
            for fname, md5 in _IDX_RESOURCES[name]
        ]
    if name == "emnist":
        raw = root / "EMNIST" / "raw"
        return [Download(_EMNIST_URL, _EMNIST_MD5, raw / "gzip.zip", extract_to=raw, gunzip_folder=raw / "gzip")]
    if name in _CIFAR_ARCHIVES:
        url, md5 = _CIFAR_ARCHIVES[name]
        return [Download(url, md5, root / url.rsplit("/", 1)[1], extract_to=root)]
    if name == "svhn":
        return [Download(_SVHN_URL + f, _SVHN_MD5[f], root / _SVHN_FOLDER / f) for f in _SVHN_FILES.values()]
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")


def run_download_plan(plan: Sequence[Download]) -> None:
    """Fetch and unpack every item of ``plan`` with torchvision's download helpers.

    A file already at its destination with the right md5 is not fetched again (it is unpacked
    again). Raises :class:`DownloadFailed` (one line, every URL tried and its error) when no URL
    gives the file.
    """
    from torchvision.datasets.utils import download_url, extract_archive

    for item in plan:
        errors = []
        for url in (item.url, *item.mirrors):
            try:
                download_url(url, str(item.destination.parent), item.destination.name, item.md5)
                break
            except (OSError, RuntimeError) as e:  # urllib's URLError is an OSError
                errors.append(f"{url}: {type(e).__name__}: {e}")
        else:
            raise DownloadFailed(_one_line(f"could not download {item.destination}: " + "; ".join(errors)))
        if item.extract_to is not None:
            extract_archive(str(item.destination), str(item.extract_to))
        if item.gunzip_folder is not None:
            target = item.extract_to if item.extract_to is not None else item.gunzip_folder.parent
            for gz in sorted(item.gunzip_folder.glob("*.gz")):
                extract_archive(str(gz), str(target))
            shutil.rmtree(item.gunzip_folder)


def download_dataset(name: str, root: str | os.PathLike | None = None, force: bool = False) -> bool:
    """Download ``name`` from its official URLs into ``data_root(root)``, in the readers' layout.

    Does nothing, and returns False, when every file the readers need is already there (unless
    ``force``: then archives still present with the right md5 are only unpacked again, which repairs
    a damaged unpacked file). Returns True after a download. Needs the internet; see
    :func:`download_plan` for what goes where.
    """
    root = data_root(root)
    plan = download_plan(name, root)
    if not force and all(_present(name, p) for p in dataset_files(name, root)):
        return False
    run_download_plan(plan)
    return True
