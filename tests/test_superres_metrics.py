"""PSNR and SSIM on the BT.601 Y channel with the border crop, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vision_core.superres.metrics import SSIM_C1, psnr, ssim


def grey(value: float, size: int = 20) -> np.ndarray:
    return np.full((size, size, 3), value, np.float64)


def test_psnr_of_a_uniform_grey_difference_on_y():
    # RGB greys 100 and 110 differ on Y by 10 * (65.481 + 128.553 + 24.966) / 255 = 10 * 219 / 255.
    difference = 10 * 219 / 255
    expected = 10 * math.log10(255**2 / difference**2)
    assert psnr(grey(110), grey(100)) == pytest.approx(expected)
    assert psnr(grey(110), grey(100)) == pytest.approx(29.4527, abs=1e-4)


def test_psnr_on_rgb_when_asked():
    assert psnr(grey(110), grey(100), y_channel=False) == pytest.approx(10 * math.log10(255**2 / 100))


def test_the_border_crop_ignores_the_outer_pixels():
    image, reference = grey(100), grey(100)
    image[:3] = image[:, -3:] = 0  # wrong only within 3 pixels of the border
    image[5, 5] = 110  # and one pixel inside
    inside = (10 * 219 / 255) ** 2 / (14 * 14)
    assert psnr(image, reference, crop_border=3) == pytest.approx(10 * math.log10(255**2 / inside))
    assert psnr(image, reference, crop_border=3) > psnr(image, reference, crop_border=2)


def test_identical_images_score_infinite_psnr_and_ssim_one():
    image = np.random.default_rng(0).integers(0, 256, (24, 24, 3)).astype(np.uint8)
    assert psnr(image, image) == math.inf
    assert ssim(image, image, crop_border=2) == pytest.approx(1.0)


def test_ssim_of_two_flat_images_is_the_luminance_term():
    # no variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1) with a, b the two Y values.
    a, b = 16 + 100 * 219 / 255, 16 + 140 * 219 / 255
    expected = (2 * a * b + SSIM_C1) / (a * a + b * b + SSIM_C1)
    assert ssim(grey(100), grey(140)) == pytest.approx(expected)


def test_ssim_averages_the_channels_when_not_on_y():
    image, reference = grey(100), grey(100)
    image[..., 0] = 140  # only red differs: two channels score 1
    a, b = 140.0, 100.0
    red = (2 * a * b + SSIM_C1) / (a * a + b * b + SSIM_C1)
    assert ssim(image, reference, y_channel=False) == pytest.approx((red + 2) / 3)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="image shapes differ"):
        psnr(grey(1, 10), grey(1, 12))
