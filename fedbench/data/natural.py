"""Datasets whose clients are given by the data: FedProx's synthetic devices and LEAF's users.

Each loader returns a :class:`~fedbench.data.registry.Dataset` with ``groups``: for every training
sample, the index of the device or user it belongs to. ``partition=natural`` makes those the
clients (:mod:`fedbench.partition.natural`). Test samples are pooled into one test set (the
global model is evaluated on every client's held-out data together).

- ``fedprox_synthetic`` (Li et al. 2020, Section 5.1; :mod:`fedbench.data.fedprox_synthetic`):
  30 devices, 60 features, 10 classes, keys ``alpha``, ``beta``, ``iid``; drawn from the ``data``
  stream; each device's samples split 90/10 into train and test after a shuffle, as the authors'
  code does. Features are float32, used as they are.
- ``femnist`` and ``shakespeare``: LEAF's JSON layout under ``dataset.root`` (``train/`` and
  ``test/`` folders of ``*.json``; :mod:`fedbench.data.leaf`; ``docs/natural_clients.md`` says
  how LEAF's scripts produce them). FEMNIST images are float32 ``(1, 28, 28)`` in [0, 1] as LEAF
  stores them; Shakespeare samples are 80 character ids (int64) and the next character.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from fedbench.data.fedprox_synthetic import generate_fedprox_synthetic, split_devices
from fedbench.data.files import data_root
from fedbench.data.registry import Dataset, register_dataset
from fedbench.registry import number, option, register
from fedbench.rng import numpy_rng


@register("dataset", "fedprox_synthetic")
@dataclass
class FedProxSyntheticConfig:
    natural_clients: ClassVar[int | None] = 30  # devices (partition=natural)
    name: str = "fedprox_synthetic"
    alpha: float = option(0.0, number(min=0))
    beta: float = option(0.0, number(min=0))
    iid: bool = False


def _pooled(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.concatenate([p[0] for p in pairs])
    y = np.concatenate([p[1] for p in pairs])
    groups = np.concatenate([np.full(len(p[1]), i, np.int64) for i, p in enumerate(pairs)])
    return x, y, groups


@register_dataset("fedprox_synthetic")
def load_fedprox_synthetic(opts: dict, seed: int) -> Dataset:
    rng = numpy_rng(seed, "data")
    devices = generate_fedprox_synthetic(
        float(opts.get("alpha", 0.0)), float(opts.get("beta", 0.0)), bool(opts.get("iid")), rng
    )
    train, test = split_devices(devices, rng)
    x_train, y_train, groups = _pooled(train)
    x_test, y_test, _ = _pooled(test)
    return Dataset(
        "fedprox_synthetic",
        torch.from_numpy(np.ascontiguousarray(x_train, np.float32)),
        torch.from_numpy(y_train.astype(np.int64)),
        torch.from_numpy(np.ascontiguousarray(x_test, np.float32)),
        torch.from_numpy(y_test.astype(np.int64)),
        10,
        groups=groups,
    )


def leaf_folder(name: str, root: str | None) -> Path:
    """The folder holding LEAF's ``train/`` and ``test/``: ``root``, else ``<data root>/leaf/<name>/data``."""
    return Path(root).expanduser() if root else data_root(None) / "leaf" / name / "data"


@dataclass
class _LeafConfig:
    natural_clients: ClassVar[int | None] = None  # users, counted from the files (partition=natural)
    root: str | None = None  # null: <data root>/leaf/<name>/data (the folder holding train/ and test/)

    def check(self, run: Any) -> str | None:
        folder = leaf_folder(self.name, self.root)
        for split in ("train", "test"):
            if not (folder / split).is_dir():
                return (
                    f"dataset={self.name}: no LEAF {split}/ folder in {folder}; produce it with LEAF's "
                    f"data/{self.name}/preprocess.sh (docs/natural_clients.md) and set dataset.root"
                )
        return None


@register("dataset", "femnist")
@dataclass
class FEMNISTConfig(_LeafConfig):
    name: str = "femnist"


@register("dataset", "shakespeare")
@dataclass
class ShakespeareConfig(_LeafConfig):
    name: str = "shakespeare"


def _load_leaf(name: str, opts: dict) -> Dataset:
    from fedbench.data.leaf import read_leaf

    data = read_leaf(leaf_folder(name, opts.get("root")), name)
    x_train, y_train, parts = data.union("train")
    x_test, y_test, _ = data.union("test")
    groups = np.empty(len(y_train), np.int64)
    for i, idx in enumerate(parts):
        groups[idx] = i
    return Dataset(
        name,
        torch.from_numpy(x_train),
        torch.from_numpy(y_train),
        torch.from_numpy(x_test),
        torch.from_numpy(y_test),
        data.num_classes,
        groups=groups,
    )


@register_dataset("femnist")
def load_femnist(opts: dict, seed: int) -> Dataset:
    return _load_leaf("femnist", opts)


@register_dataset("shakespeare")
def load_shakespeare(opts: dict, seed: int) -> Dataset:
    return _load_leaf("shakespeare", opts)
