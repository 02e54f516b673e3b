"""Known-answer tests written for the survivors of the mutation run of the batch preparation
(``fedbench.data.batch``: scale, crop with zero padding, flip, normalise, and the draws of each
sample's augmentation row; see docs/testing.md). Expected values are computed by hand (in the
comments), by torchvision's functional ops, or by numpy written from the module's docstring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

# at module level: mutmut's forkserver imports the test files once, so no mutant's run pays torchvision's
# ~4 s import (test_data_images imports it inside a test)
import torchvision.transforms.v2.functional as TF2

from fedbench.data.batch import BatchPrep, draw_augmentation, draw_sample_info


# ---- augment and BatchPrep.__call__ -------------------------------------------------------------------
def _torchvision_reference(x, aug, padding, mean, std, scale=1 / 255):
    """RandomCrop(padding) -> hflip -> ToTensor-like scaling -> Normalize, sample by sample, with
    torchvision's functional ops at the drawn offsets (the module doc's order: crop and flip on the
    stored image, zero padding, then normalise)."""
    out = []
    for i, (dy, dx, flip) in enumerate(aug.tolist()):
        img = TF2.pad(x[i], [padding], fill=0)
        img = TF2.crop(img, dy, dx, x.shape[2], x.shape[3])
        img = TF2.horizontal_flip(img) if flip else img
        out.append(TF2.normalize(img.float() * scale, list(mean), list(std)))
    return torch.stack(out)


def test_non_square_crop_flip_normalise_match_torchvision():
    """A 3 x 5 image (H != W), two channels, padding 2, offsets with dy != dx: every row/column
    index of the crop window is checked against torchvision (a square image cannot tell H from W)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (4, 2, 3, 5), generator=g, dtype=torch.uint8)
    aug = torch.tensor([[0, 4, 0], [4, 1, 1], [3, 0, 1], [2, 2, 0]])  # (dy, dx, flip), offsets in [0, 2p]
    mean, std = (0.5, 0.25), (0.5, 0.125)
    out = BatchPrep(scale=1 / 255, mean=mean, std=std, crop_padding=2, hflip=True)(x, aug)
    assert out.shape == (4, 2, 3, 5) and out.dtype == torch.float32
    torch.testing.assert_close(out, _torchvision_reference(x, aug, 2, mean, std), rtol=1e-6, atol=1e-6)


def test_scale_other_than_one_over_255_is_applied():
    """x.float() * scale for any scale: 2.0 (not only 1/255): uint8 3 -> 6.0, 100 -> 200.0."""
    out = BatchPrep(scale=2.0)(torch.tensor([[3, 100]], dtype=torch.uint8))
    assert out.dtype == torch.float32 and out.tolist() == [[6.0, 200.0]]


def test_identity_prep_still_returns_float32_inputs():
    """An identity prep (scale 1, no mean, no augmentation, no skew) hands float32 through as is,
    but a float64 or uint8 batch still becomes the model's float32 (step 1: x.float())."""
    prep = BatchPrep()
    f32 = torch.tensor([[0.5, -1.0]])
    assert prep(f32) is f32
    for x in (torch.tensor([[0.5, -1.0]], dtype=torch.float64), torch.tensor([[7, 255]], dtype=torch.uint8)):
        out = prep(x)
        assert out.dtype == torch.float32 and out.tolist() == x.double().tolist()


def test_three_column_aug_with_a_skew_prep_augments_without_skew():
    """``aug`` of shape (B, 3) (no skew columns) given to a prep that has a feature skew: crop and
    flip are applied, the skew is not (it reads columns 3.. only when they are there)."""
    from fedbench.data.skew import FeatureSkew

    skew = FeatureSkew(sigma=(0.0, 1.0), angle=(0.0, 90.0))  # client 1 would be noisy and turned
    prep = BatchPrep(crop_padding=1, hflip=True, skew=skew)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)
    # padded by 1: rows 0 0 0 0 / 0 1 2 0 / 0 3 4 0 / 0 0 0 0; the 2 x 2 window at (dy, dx) = (0, 1)
    # is 0 0 / 1 2, flipped 0 0 / 2 1
    out = prep(x, torch.tensor([[0, 1, 1]]))
    assert out.tolist() == [[[[0.0, 0.0], [2.0, 1.0]]]]


def test_an_augmenting_prep_without_aug_gives_clean_inputs():
    """Evaluation calls the function without ``aug``: no crop, no flip, only scale and normalise.
    uint8 (0, 51, 255) / 255 = (0, 0.2, 1); (v - 0.5) / 0.5 = (-1, -0.6, 1)."""
    prep = BatchPrep(scale=1 / 255, mean=(0.5,), std=(0.5,), crop_padding=2, hflip=True)
    out = prep(torch.tensor([[[[0, 51, 255]]]], dtype=torch.uint8))
    torch.testing.assert_close(out, torch.tensor([[[[-1.0, -0.6, 1.0]]]]))


# ---- draw_augmentation and draw_sample_info -------------------------------------------------------------
def test_crop_offsets_cover_zero_to_two_padding_uniformly_and_flips_are_fair():
    """The docstring's law: dy, dx uniform on {0, ..., 2p}, flip bit 0/1 with probability 1/2.
    200 x 50 slots with p = 2: each of the 5 offsets has expected count 10,000 / 5 = 2,000 per
    column (binomial std sqrt(10,000 * 0.2 * 0.8) = 40; 5 std = 200), flips 5,000 (std 50)."""
    out = draw_augmentation(np.random.default_rng(0), (200, 50), 2, True)
    assert out.shape == (200, 50, 3) and out.dtype == np.int64
    for col in (0, 1):
        values, counts = np.unique(out[..., col], return_counts=True)
        assert values.tolist() == [0, 1, 2, 3, 4] and np.all(np.abs(counts - 2000) < 200), (col, counts)
    values, counts = np.unique(out[..., 2], return_counts=True)
    assert values.tolist() == [0, 1] and abs(counts[1] - 5000) < 250, counts
    assert not np.array_equal(out[..., 0], out[..., 1])  # two independent offsets, not one copied


def _reference_sample_info(seed, shape, padding, hflip, client, noisy):
    """The docstrings' order on one numpy Generator: offsets (dy, dx) uniform on {0..2p}, then
    the flip bits, then, with feature skew, one noise seed per step (only when some client is
    noisy); the skew columns are (client, step seed, slot)."""
    rng = np.random.default_rng(seed)
    steps, b = shape
    out = np.zeros((steps, b, 6), np.int64)
    if padding > 0:
        out[..., :2] = rng.integers(0, 2 * padding + 1, size=(steps, b, 2))
    if hflip:
        out[..., 2] = rng.integers(0, 2, size=(steps, b))
    out[..., 3] = client
    if noisy:
        out[..., 4] = rng.integers(0, 2**63 - 1, size=steps)[:, None]  # the same seed for a step's slots
    out[..., 5] = np.arange(b)  # slot
    return out


@pytest.mark.parametrize("padding, hflip", [(2, True), (0, True), (3, False)])
@pytest.mark.parametrize("sigma", [(0.0, 0.5, 0.0), (0.0, 0.0, 0.0)])  # noisy / rotation only
def test_sample_info_columns_and_draw_order_known_answer(padding, hflip, sigma):
    from fedbench.data.skew import FeatureSkew

    skew = FeatureSkew(sigma=sigma, angle=(0.0, 30.0, 60.0))
    prep = BatchPrep(crop_padding=padding, hflip=hflip, skew=skew)
    got = draw_sample_info(np.random.default_rng(11), (4, 3), prep, 2)
    expected = _reference_sample_info(11, (4, 3), padding, hflip, 2, any(s > 0 for s in sigma))
    assert got.shape == (4, 3, 6) and got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    assert (got[..., 2].any() == hflip) and (got[..., :2].any() == (padding > 0))  # draws actually made


def test_sample_info_without_skew_is_the_augmentation_triple():
    prep = BatchPrep(crop_padding=1, hflip=True)
    got = draw_sample_info(np.random.default_rng(5), (3, 4), prep, 7)
    np.testing.assert_array_equal(got, _reference_sample_info(5, (3, 4), 1, True, 7, False)[..., :3])
