"""scikit-learn's embedded 8x8 handwritten digits (UCI ML hand-written digits, 1,797 images).

Ships inside scikit-learn, so it works offline. Pixels (0..16) are scaled to [0, 1] and then
standardised with the training set's mean and std. The train/test split is fixed
(stratified, ``random_state=0``) and does not depend on the run seed, so test accuracy is always
measured on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedbench.data.registry import Dataset, register_dataset
from fedbench.registry import number, option, register


@register("dataset", "digits")
@dataclass
class DigitsConfig:
    name: str = "digits"
    test_fraction: float = option(0.2, number(0, 1, min_open=True, max_open=True))


@register_dataset("digits")
def load_digits(opts: dict, seed: int) -> Dataset:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    test_fraction = float(opts.get("test_fraction", 0.2))
    bunch = sk_load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=test_fraction, random_state=0, stratify=y.numpy()
    )
    idx_train, idx_test = torch.as_tensor(idx_train), torch.as_tensor(idx_test)
    mean, std = x[idx_train].mean(), x[idx_train].std()
    x = (x - mean) / std
    return Dataset("digits", x[idx_train], y[idx_train], x[idx_test], y[idx_test], 10)
