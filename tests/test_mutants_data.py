"""Known-answer tests written for the survivors of the first mutation run of the data-side math
(``fedbench.data.skew``; ``fedbench.partition.feature`` had only equivalent survivors; see
docs/testing.md). Every expected value is computed by hand (in the comments), by torch.rot90, or
by an independent numpy implementation written from the module's docstring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedbench.data.skew import FeatureSkew, rotate


# ---- fedbench.data.skew ----------------------------------------------------------------------------
def _ref_rotate(img: np.ndarray, deg: float) -> np.ndarray:
    """From skew.rotate's docstring: output pixel p (centred coordinates, y down) reads the input at
    R(-a) p, R(a) = [[cos a, sin a], [-sin a, cos a]]; bilinear, zeros outside the image."""
    h, w = img.shape
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            X, Y = j - (w - 1) / 2, i - (h - 1) / 2
            xs, ys = c * X - s * Y + (w - 1) / 2, s * X + c * Y + (h - 1) / 2
            x0, y0 = math.floor(xs), math.floor(ys)
            for yy, wy in ((y0, 1 - (ys - y0)), (y0 + 1, ys - y0)):
                for xx, wx in ((x0, 1 - (xs - x0)), (x0 + 1, xs - x0)):
                    if 0 <= yy < h and 0 <= xx < w:
                        out[i, j] += wy * wx * img[yy, xx]
    return out


def test_non_square_rotation_matches_a_numpy_bilinear_reference():
    """A 4 x 6 image turned by 30 and 90 degrees (non-square: both resampled, the aspect terms
    h / w and w / h of the affine matrix matter; the half turn of the existing test hides them)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 4, 6, generator=g, dtype=torch.float64)
    out = rotate(x, torch.tensor([30.0, 90.0], dtype=torch.float64))
    for k, deg in enumerate((30.0, 90.0)):
        np.testing.assert_allclose(out[k, 0].numpy(), _ref_rotate(x[k, 0].numpy(), deg), atol=1e-6)


def test_client_ids_past_the_table_are_left_clean():
    """The module doc: ids outside the tables are left clean; not only id N (FLTrust's virtual client,
    the trailing 0 of the table) but any larger id, which the clamp/clip maps to that 0."""
    skew = FeatureSkew(sigma=(0.0, 0.5, 1.0), angle=(0.0, 45.0, 90.0))
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    info = torch.tensor([[3, 11, 0], [4, 11, 1], [9, 12, 0]])  # (client, seed, slot), N = 3
    assert torch.equal(skew.rotate(x, info), x)
    assert torch.equal(skew.add_noise(x, info, None), x)


def test_noise_known_answer_from_the_step_seed_and_slot():
    """add_noise by its definition: row r of client c, step seed s, slot j gets
    sigma_c * z_j / std[ch], z_j = row j of default_rng(s).standard_normal((k, D), float32), for any
    k > j (numpy fills in order). Two channels with std (0.5, 2.0); rows out of slot order; one row
    of the clean client 0 (sigma 0) sharing a seed with a noisy row."""
    sigma = (0.0, 0.25, 1.5)
    skew = FeatureSkew(sigma=sigma, angle=(0.0, 0.0, 0.0))
    std = (0.5, 2.0)
    x = torch.rand(4, 2, 3, 2, generator=torch.Generator().manual_seed(2))
    info = torch.tensor([[2, 77, 3], [1, 5, 0], [2, 77, 1], [0, 77, 0]])
    out = skew.add_noise(x, info, std)
    d = 2 * 3 * 2
    for r, (client, seed, slot) in enumerate(info.tolist()):
        z = np.random.default_rng(seed).standard_normal((slot + 1, d), np.float32)[slot].reshape(2, 3, 2)
        want = x[r].numpy() + sigma[client] * z / np.array(std, np.float32).reshape(2, 1, 1)
        np.testing.assert_allclose(out[r].numpy(), want, rtol=0, atol=1e-6)
    # without per-channel normalisation the noise is sigma_c * z_j itself
    out = skew.add_noise(x, info[:2], None)
    z = np.random.default_rng(77).standard_normal((4, d), np.float32)[3].reshape(2, 3, 2)
    np.testing.assert_allclose(out[0].numpy(), x[0].numpy() + 1.5 * z, rtol=0, atol=1e-6)


def test_a_single_row_and_a_one_degree_client_are_rotated():
    """FeatureSkew.rotate turns every row whose angle is not a multiple of 360, even when there is
    only one such row, and even for an angle of 1 degree (compared with the numpy reference)."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 1, 5, 5, generator=g)
    one = FeatureSkew(sigma=(0.0, 0.0), angle=(0.0, 90.0)).rotate(x, torch.tensor([[1, 0, 0]]))
    assert torch.equal(one, torch.rot90(x, 1, (-2, -1)))
    x = torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64)
    out = FeatureSkew(sigma=(0.0, 0.0), angle=(0.0, 1.0)).rotate(x, torch.tensor([[0, 0, 0], [1, 0, 1]]))
    assert torch.equal(out[0], x[0])  # client 0: angle 0, untouched
    np.testing.assert_allclose(out[1, 0].numpy(), _ref_rotate(x[1, 0].numpy(), 1.0), atol=1e-6)
    assert not torch.allclose(out[1], x[1])


def test_rotate_reads_angles_modulo_360():
    """rotate() on whole turns and negative angles: 360 -> identity, -90 -> three quarter turns,
    450 -> one quarter turn (square images: exact torch.rot90); 182 is no quarter turn."""
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(4))
    out = rotate(x, torch.tensor([360.0, -90.0, 450.0]))
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1], torch.rot90(x[1], 3, (-2, -1)))
    assert torch.equal(out[2], torch.rot90(x[2], 1, (-2, -1)))
    # 182 degrees is not a quarter turn: resampled (numpy reference), not sent to rot90
    y = x[:1].double()
    np.testing.assert_allclose(
        rotate(y, torch.tensor([182.0], dtype=torch.float64))[0, 1].numpy(),
        _ref_rotate(y[0, 1].numpy(), 182.0),
        atol=1e-6,
    )


def test_rotation_on_token_ids_names_the_rotation_key():
    from fedbench.data.skew import feature_skew

    tokens = torch.zeros(3, 80, dtype=torch.int64)
    msg = (
        r"^partition\.rotation=90: dataset=shakespeare holds torch\.int64 inputs \(token ids\), which cannot "
        r"be perturbed; allowed: rotation=0$"
    )
    with pytest.raises(ValueError, match=msg):
        feature_skew(4, 0.0, 90.0, "shakespeare", tokens)
