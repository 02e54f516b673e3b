"""Image datasets as config options: tiny files in the real formats, loaded through the real code
path, stored as uint8, normalised and augmented in the one batch function, the same under every
engine; absent files are a one-line config error before any run."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from test_data_files import write_cifar10, write_mnist

from fedbench.config import ConfigError, compose, validate
from fedbench.data.batch import BatchPrep, augment
from fedbench.data.images import channel_stats
from fedbench.engine.schedule import make_schedule
from fedbench.runner import run_experiment
from fedbench.simulation import Simulation

TINY = ["num_clients=4", "clients_per_round=2", "partition=iid", "model=logreg", "rounds=2", "progress=false"]


def test_channel_stats_known_answer():
    x = torch.zeros(2, 2, 1, 2, dtype=torch.uint8)
    x[:, 0] = 255  # channel 0: all ones after scaling
    x[0, 1, 0, 0] = 255  # channel 1: one 1.0 among four values -> mean 0.25, std sqrt(0.25 * 0.75)
    mean, std = channel_stats(x)
    assert mean == pytest.approx((1.0, 0.25)) and std == pytest.approx((0.0, (0.25 * 0.75) ** 0.5))


def test_batch_prep_scales_and_normalises_per_channel():
    prep = BatchPrep(scale=1 / 255, mean=(0.5, 0.0), std=(0.5, 2.0))
    x = torch.tensor([[[[255]], [[51]]]], dtype=torch.uint8)  # (1, 2, 1, 1)
    out = prep(x)
    assert out.dtype == torch.float32 and out.flatten().tolist() == pytest.approx([1.0, 0.1])
    tokens = torch.tensor([[3, 1, 4]])
    assert prep(tokens) is tokens  # token ids go to the model's embedding untouched


def test_crop_and_flip_known_answers():
    img = torch.arange(1.0, 10.0).view(1, 1, 3, 3)  # rows 1 2 3 / 4 5 6 / 7 8 9
    x = img.expand(4, 1, 3, 3)
    # padding 1: offset (1, 1) is the original, (0, 0) shifts right and down, (2, 0) up and right
    aug = torch.tensor([[1, 1, 0], [0, 0, 0], [2, 0, 0], [1, 1, 1]])
    out = augment(x, aug, padding=1, hflip=True)
    assert out[0, 0].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert out[1, 0].tolist() == [[0, 0, 0], [0, 1, 2], [0, 4, 5]]
    assert out[2, 0].tolist() == [[0, 4, 5], [0, 7, 8], [0, 0, 0]]
    assert out[3, 0].tolist() == [[3, 2, 1], [6, 5, 4], [9, 8, 7]]  # flipped


def test_crop_pads_with_black_before_normalising_as_torchvision():
    """The reference pipeline RandomCrop(padding=1) -> ToTensor -> Normalize, written with
    torchvision's functional ops at the drawn offset: the border is black (0) before normalising,
    so it becomes -mean / std, not the channel mean."""
    import torchvision.transforms.functional as TF

    from fedbench.data.batch import BatchPrep

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 4, 4), generator=g, dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)
    aug = torch.tensor([[0, 2, 0], [1, 0, 1]])  # (dy, dx, flip)
    out = BatchPrep(scale=1 / 255, mean=mean, std=std, crop_padding=1, hflip=True)(x, aug)
    for i, (dy, dx, flip) in enumerate(aug.tolist()):
        img = TF.crop(TF.pad(x[i], [1]), dy, dx, 4, 4)  # pads uint8 with 0
        img = TF.hflip(img) if flip else img
        ref = TF.normalize(img.float() / 255, mean, std)
        torch.testing.assert_close(out[i], ref, rtol=1e-6, atol=1e-6)
    # sample 0 at (dy, dx) = (0, 2): its first row and last column are border, (0 - mean) / std
    border = torch.tensor([-0.5 / 0.25, -0.4 / 0.2, -0.3 / 0.1]).view(3, 1).expand(3, 4)
    torch.testing.assert_close(out[0, :, 0, :], border)
    torch.testing.assert_close(out[0, :, :, 3], border)


def test_augmentation_is_drawn_with_the_batches_and_leaves_them_unchanged():
    class Local:
        batch_size, local_epochs, local_steps = 4, 2, None

    samples = np.arange(10, 20)
    plain = make_schedule(samples, Local, 7, 3, 5)
    prep = BatchPrep(crop_padding=4, hflip=True)
    a = make_schedule(samples, Local, 7, 3, 5, prep)
    b = make_schedule(samples, Local, 7, 3, 5, prep)
    assert plain.aug is None and np.array_equal(a.index, plain.index)  # same batches with augmentation on
    assert np.array_equal(a.aug, b.aug) and a.aug.shape == (*a.index.shape, 3)  # deterministic per key
    assert a.aug[..., :2].min() >= 0 and a.aug[..., :2].max() <= 8 and set(np.unique(a.aug[..., 2])) <= {0, 1}
    other = make_schedule(samples, Local, 7, 3, 6, prep)  # another client: other draws
    assert not np.array_equal(a.aug, other.aug)


def test_mnist_from_idx_files_runs_stored_as_uint8(tmp_path):
    write_mnist(tmp_path, n=(40, 12))
    cfg = compose(*TINY, "dataset=mnist", f"dataset.root={tmp_path}")
    sim = Simulation(validate(cfg))
    assert sim.data.x_train.dtype == torch.uint8 and sim.data.x_train.shape == (40, 1, 28, 28)
    mean, std = sim.data.prep.mean[0], sim.data.prep.std[0]
    expected = sim.data.x_train.double() / 255
    assert mean == pytest.approx(float(expected.mean())) and std == pytest.approx(float(expected.std(unbiased=False)))
    summary = run_experiment(cfg, tmp_path / "run", callbacks=[])
    assert summary["status"] == "completed", summary["error"]
    assert summary["num_params"] == 28 * 28 * 10 + 10


def test_engines_agree_on_augmented_cifar_batches(tmp_path):
    write_cifar10(tmp_path, per_batch=8)  # 40 training images
    base = [*TINY, "dataset=cifar10", f"dataset.root={tmp_path}", "dataset.crop_padding=4", "dataset.hflip=true"]
    base += ["algorithm.batch_size=4", "rounds=1"]
    models = {}
    for engine in ("vmap", "sequential"):
        sim = Simulation(validate(compose(*base, f"engine={engine}")))
        sim.step()
        models[engine] = sim.last_record.updates
    # float32 rounding of two orders of summation over 3,072 inputs, 10 steps: well under 1e-5
    torch.testing.assert_close(models["vmap"], models["sequential"], rtol=1e-5, atol=1e-6)
    plain = Simulation(validate(compose(*base[:-4], "algorithm.batch_size=4", "rounds=1", "engine=vmap")))
    plain.step()
    assert not torch.allclose(plain.last_record.updates, models["vmap"])  # augmentation did change the batches


def test_absent_files_are_a_one_line_config_error(tmp_path):
    root = tmp_path / "nothing"
    with pytest.raises(ConfigError) as e:
        validate(compose("dataset=mnist", f"dataset.root={root}"))
    msg = str(e.value)
    assert msg == (
        f"dataset=mnist: mnist: no training images at {root}/MNIST/raw/train-images-idx3-ubyte(.gz); "
        f"get them with: python -m fedbench.data.download mnist --root {root}"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "fedbench", "dataset=cifar10", f"dataset.root={root}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"cifar10: no training batch 1 at {root}/cifar-10-batches-py/data_batch_1" in proc.stderr
