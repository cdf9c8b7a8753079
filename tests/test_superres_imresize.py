"""MATLAB's bicubic imresize (BasicSR's definition) against hand-computed weights, and BT.601 colour."""

from __future__ import annotations

import numpy as np
import pytest

from vision_core.data.superres.colour import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from vision_core.data.superres.imresize import cubic, imresize, output_size, resize_matrix

# Keys' cubic (a = -0.5) at 0.25, 0.75, 1.25, 1.75 (by hand: 1.5|x|^3 - 2.5|x|^2 + 1 and
# -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2).
CUBIC_AT_QUARTERS = {0.25: 0.8671875, 0.75: 0.2265625, 1.25: -0.0703125, 1.75: -0.0234375}


def test_the_cubic_kernel_has_keys_values():
    assert cubic(np.array(list(CUBIC_AT_QUARTERS))) == pytest.approx(list(CUBIC_AT_QUARTERS.values()))
    assert cubic(np.array([0.0, 1.0, 2.0, 2.5])).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_halving_weighs_eight_pixels_with_the_stretched_kernel():
    # output pixel 4 (1-based) samples u = 4 / 0.5 + 0.5 * (1 - 2) = 7.5: input pixels 4..11 at distances
    # 3.5, 2.5, 1.5, 0.5 on each side; the kernel is stretched x2, so it is cubic(distance / 2) / 2.
    row = resize_matrix(16, 8, 0.5)[3]
    side = [CUBIC_AT_QUARTERS[d] / 2 for d in (1.75, 1.25, 0.75, 0.25)]
    expected = np.zeros(16)
    expected[3:11] = side + side[::-1]
    assert row == pytest.approx(expected, abs=1e-12)
    assert row.sum() == pytest.approx(1.0)


def test_doubling_mirrors_positions_outside_the_image():
    # output pixel 1 samples u = 0.75: positions -1, 0, 1, 2 at distances 1.75, 0.75, -0.25, -1.25; MATLAB's
    # symmetric mirror maps 0 -> 1 and -1 -> 2.
    row = resize_matrix(4, 8, 2)[0]
    first = CUBIC_AT_QUARTERS[0.75] + CUBIC_AT_QUARTERS[0.25]
    second = CUBIC_AT_QUARTERS[1.75] + CUBIC_AT_QUARTERS[1.25]
    assert row == pytest.approx([first, second, 0.0, 0.0])


def test_output_size_is_the_ceiling_of_side_times_scale():
    assert output_size(240, 241, 1 / 3) == (80, 81)
    assert imresize(np.zeros((10, 7, 3), np.uint8), 1 / 3).shape == (4, 3, 3)
    assert imresize(np.zeros((5, 6), np.float32), 3).shape == (15, 18)


def test_a_constant_image_stays_constant_and_uint8_rounds():
    image = np.full((12, 9, 3), 77, np.uint8)
    for scale in (1 / 4, 1 / 3, 1 / 2, 2, 3):
        resized = imresize(image, scale)
        assert resized.dtype == np.uint8 and np.all(resized == 77)
    assert np.allclose(imresize(np.full((6, 6), 0.25, np.float32), 0.5), 0.25)


def test_a_uint8_step_overshoots_and_is_clipped():
    image = np.zeros((8, 8), np.uint8)
    image[:, 4:] = 255
    floats = imresize(image.astype(np.float32), 2)
    assert floats.min() < 0 and floats.max() > 255  # the cubic kernel's ringing
    clipped = imresize(image, 2)
    assert clipped.min() == 0 and clipped.max() == 255
    assert np.array_equal(clipped, np.clip(np.round(floats), 0, 255).astype(np.uint8))


def test_height_and_width_are_resized_separably():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (9, 12)).astype(np.float32)
    rows, columns = resize_matrix(9, 3, 1 / 3), resize_matrix(12, 4, 1 / 3)
    assert imresize(image, 1 / 3) == pytest.approx((rows @ image @ columns.T).astype(np.float32), abs=1e-3)


def test_bt601_luma_of_black_white_and_pure_colours():
    assert rgb_to_y(np.array([[0, 0, 0], [255, 255, 255]])) == pytest.approx([16.0, 235.0])
    assert rgb_to_y(np.array([255, 0, 0])) == pytest.approx(16 + 65.481)
    assert rgb_to_ycbcr(np.array([255, 255, 255])) == pytest.approx([235.0, 128.0, 128.0])
    rgb = np.random.default_rng(1).uniform(0, 255, (4, 3))
    assert ycbcr_to_rgb(rgb_to_ycbcr(rgb)) == pytest.approx(rgb)
