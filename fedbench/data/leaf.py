"""Reader for LEAF's JSON layout (FEMNIST, Shakespeare): one client per LEAF user.

LEAF (Caldas et al., "LEAF: A Benchmark for Federated Settings", arXiv:1812.01097,
https://github.com/TalwalkarLab/leaf) writes, after ``./preprocess.sh ... -t sample``,

    <root>/train/*.json    <root>/test/*.json

each file an object ``{"users": [...], "num_samples": [...], "user_data": {user: {"x": [...],
"y": [...]}}}`` (Shakespeare files also carry ``"hierarchies"``; extra keys are ignored). A user's
samples sit in one file per split; ``-t sample`` puts every user in both splits.

What :func:`read_leaf` returns (:class:`LeafData`):

- **users** sorted by user id (Python string order) across all files, whatever the file names
  or the order of ``users`` inside them; a user's samples keep their order in the file.
- per user, ``train[i]`` and ``test[i]``: ``(x, y)`` numpy arrays; a user found only in train
  files gets empty test arrays. :meth:`LeafData.union` concatenates them (the union over files
  and users) and gives each user's index array into the concatenation.
- only the users listed in a file's ``users`` are read: LEAF's ``split_data.py`` leaves an empty
  ``user_data`` entry for users it dropped (fewer than 2 samples), which is skipped.

Decoders (``kind``):

- ``"femnist"``: ``x`` is a list of 784 numbers per sample, ``y`` in ``0..61`` (10 digits,
  26 upper-case, 26 lower-case letters; ``relabel_class`` in LEAF's
  ``data/femnist/preprocess/data_to_json.py``). LEAF converts each NIST image to grey-scale
  (``PIL .convert('L')``), shrinks it to 28x28 and divides by 255, with no inversion: values are in
  [0, 1] with **1.0 the white background and the ink dark**, the opposite polarity to MNIST. We
  return them unchanged (LEAF's own CNN consumes them so) as float32 ``(N, 1, 28, 28)``.
- ``"shakespeare"``: ``x`` is an 80-character string, ``y`` the next character. Both are encoded
  with LEAF's ``ALL_LETTERS`` (``models/utils/language_utils.py``, 80 symbols) into int64
  ``(N, 80)`` and ``(N,)``. LEAF's ``word_to_indices`` maps a character outside the alphabet to
  ``-1`` (``str.find``); we refuse such a file instead, naming the character.

Every problem with the folder or a file is a one-line ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ALL_LETTERS = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
"""LEAF's Shakespeare alphabet, ``models/utils/language_utils.py``; index = class id."""

SEQ_LEN = 80
"""Shakespeare's input length (``seq_length=80`` in LEAF's ``shake_utils.py``)."""

FEMNIST_SIDE = 28
FEMNIST_CLASSES = 62
KINDS = ("femnist", "shakespeare")

_LOOKUP = np.full(128, -1, dtype=np.int64)
for _i, _c in enumerate(ALL_LETTERS):
    _LOOKUP[ord(_c)] = _i
del _i, _c

Pair = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class LeafData:
    """A LEAF dataset read by :func:`read_leaf`: ``train[i]``/``test[i]`` belong to ``users[i]``."""

    kind: str
    num_classes: int
    users: tuple[str, ...]
    train: tuple[Pair, ...]
    test: tuple[Pair, ...]

    def union(self, split: str = "train") -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """``(x, y, indices)``: every user's ``split`` samples concatenated in user order, and
        ``indices[i]``, the int64 positions of user ``i``'s samples in ``x``/``y``."""
        if split not in ("train", "test"):
            raise ValueError(f"split={split!r}: must be 'train' or 'test'")
        pairs = self.train if split == "train" else self.test
        x = np.concatenate([p[0] for p in pairs])
        y = np.concatenate([p[1] for p in pairs])
        bounds = np.cumsum([0, *(len(p[1]) for p in pairs)])
        indices = [np.arange(bounds[i], bounds[i + 1], dtype=np.int64) for i in range(len(pairs))]
        return x, y, indices


def _fail(path: Path, problem: str) -> ValueError:
    return ValueError(f"{path}: {problem}")


def _labels(path: Path, user: str, y: list[Any], num_classes: int) -> np.ndarray:
    for value in y:
        integral = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not integral or not 0 <= value < num_classes:
            raise _fail(path, f"user {user!r}: label {value!r} is not a class id in 0..{num_classes - 1}")
    return np.asarray(y, dtype=np.int64).reshape(len(y))


def _decode_femnist(path: Path, user: str, x: list[Any], y: list[Any]) -> Pair:
    size = FEMNIST_SIDE * FEMNIST_SIDE
    for i, row in enumerate(x):
        if not isinstance(row, list) or len(row) != size:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise _fail(path, f"user {user!r}: sample {i}: x has {got}, expected a list of {size} pixel values")
    try:
        arr = np.asarray(x, dtype=np.float32).reshape(len(x), 1, FEMNIST_SIDE, FEMNIST_SIDE)
    except (TypeError, ValueError) as err:
        raise _fail(path, f"user {user!r}: x is not numeric: {str(err).splitlines()[0]}") from None
    if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1):
        raise _fail(path, f"user {user!r}: pixel values outside [0, 1] (LEAF stores grey levels / 255)")
    return arr, _labels(path, user, y, FEMNIST_CLASSES)


def _encode(path: Path, user: str, what: str, text: str, shape: tuple[int, ...]) -> np.ndarray:
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    out = np.where(codes < 128, _LOOKUP[np.minimum(codes, 127)], -1)
    bad = np.flatnonzero(out < 0)
    if bad.size:
        char = chr(int(codes[bad[0]]))
        raise _fail(path, f"user {user!r}: {what} has character {char!r}, not in LEAF's ALL_LETTERS")
    return out.reshape(shape)


def _decode_shakespeare(path: Path, user: str, x: list[Any], y: list[Any]) -> Pair:
    for i, s in enumerate(x):
        if not isinstance(s, str) or len(s) != SEQ_LEN:
            got = f"{len(s)} characters" if isinstance(s, str) else type(s).__name__
            raise _fail(path, f"user {user!r}: sample {i}: x has {got}, expected a string of {SEQ_LEN} characters")
    for i, c in enumerate(y):
        if not isinstance(c, str) or len(c) != 1:
            raise _fail(path, f"user {user!r}: sample {i}: y is {c!r}, expected one character")
    xs = _encode(path, user, "x", "".join(x), (len(x), SEQ_LEN))
    ys = _encode(path, user, "y", "".join(y), (len(y),))
    return xs, ys


_DECODERS: dict[str, tuple[int, Callable[[Path, str, list[Any], list[Any]], Pair]]] = {
    "femnist": (FEMNIST_CLASSES, _decode_femnist),
    "shakespeare": (len(ALL_LETTERS), _decode_shakespeare),
}


def _read_file(path: Path) -> dict[str, tuple[list[Any], list[Any]]]:
    """One LEAF file's ``{user: (x, y)}`` after checking its structure."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError) as err:
        raise _fail(path, f"cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise _fail(path, f"not JSON: {err}") from None
    if not isinstance(data, dict):
        raise _fail(path, f"not a LEAF file: top level is a {type(data).__name__}, expected an object")
    for key in ("users", "num_samples", "user_data"):
        if key not in data:
            raise _fail(path, f"not a LEAF file: missing key {key!r}")
    users, counts, user_data = data["users"], data["num_samples"], data["user_data"]
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise _fail(path, "not a LEAF file: 'users' is not a list of strings")
    if not isinstance(counts, list) or len(counts) != len(users):
        n = len(counts) if isinstance(counts, list) else type(counts).__name__
        raise _fail(path, f"not a LEAF file: 'num_samples' has {n} entries for {len(users)} users")
    if not isinstance(user_data, dict):
        raise _fail(path, "not a LEAF file: 'user_data' is not an object")
    out: dict[str, tuple[list[Any], list[Any]]] = {}
    for user, count in zip(users, counts):
        if user in out:
            raise _fail(path, f"user {user!r} is listed twice in 'users'")
        entry = user_data.get(user)
        if not isinstance(entry, dict) or not isinstance(entry.get("x"), list) or not isinstance(entry.get("y"), list):
            raise _fail(path, f"user {user!r} has no 'x' and 'y' lists in 'user_data'")
        x, y = entry["x"], entry["y"]
        if len(x) != len(y):
            raise _fail(path, f"user {user!r} has {len(x)} x but {len(y)} y")
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count != len(y):
            raise _fail(path, f"user {user!r}: num_samples says {count!r} but user_data has {len(y)} samples")
        out[user] = (x, y)
    return out


def _json_files(root: Path, split: str) -> list[Path]:
    folder = root / split
    files = sorted(p for p in folder.iterdir() if p.suffix == ".json" and p.is_file())
    if not files:
        raise ValueError(f"{folder}: no .json files (LEAF layout: {root}/train/*.json and {root}/test/*.json)")
    return files


def _read_split(root: Path, split: str) -> dict[str, tuple[Path, list[Any], list[Any]]]:
    merged: dict[str, tuple[Path, list[Any], list[Any]]] = {}
    for path in _json_files(root, split):
        for user, (x, y) in _read_file(path).items():
            if user in merged:
                raise _fail(path, f"user {user!r} is also in {merged[user][0]}")
            merged[user] = (path, x, y)
    return merged


def read_leaf(root: str | Path, kind: str) -> LeafData:
    """Read LEAF's ``root/train/*.json`` and ``root/test/*.json`` and decode them as ``kind``.

    ``kind`` is ``"femnist"`` or ``"shakespeare"``. See the module docstring for the order of
    users, the arrays returned and the checks; any problem is a one-line ``ValueError``.
    """
    if kind not in _DECODERS:
        raise ValueError(f"kind={kind!r}: must be one of {', '.join(KINDS)}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder (expected LEAF's train/ and test/ subfolders)")
    num_classes, decode = _DECODERS[kind]
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise ValueError(
                f"{root / split}: no such folder (LEAF layout: {root}/train/*.json and {root}/test/*.json)"
            )
    train_raw = _read_split(root, "train")
    test_raw = _read_split(root, "test")
    for user, (path, _, _) in test_raw.items():
        if user not in train_raw:
            raise _fail(path, f"user {user!r} is in test but in no train file (LEAF's -t sample keeps users in both)")
    users = tuple(sorted(train_raw))
    train, test = [], []
    for user in users:
        path, x, y = train_raw[user]
        train.append(decode(path, user, x, y))
        if user in test_raw:
            path, x, y = test_raw[user]
            test.append(decode(path, user, x, y))
        else:
            test.append(decode(path, user, [], []))
    return LeafData(kind, num_classes, users, tuple(train), tuple(test))
