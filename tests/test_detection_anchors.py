"""RetinaNet anchors and SSD default boxes: counts, order, sizes (xyxy pixels)."""

import math

import numpy as np
import pytest

from vision_core.detection.anchors import (
    RetinaNetAnchors,
    SSDDefaultBoxes,
    feature_size,
)


def _centres(boxes):
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def _sizes(boxes):
    return np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)


def test_retinanet_512_p3_to_p7_has_49104_anchors():
    anchors = RetinaNetAnchors()((512, 512))
    assert anchors.shape == (49104, 4) and anchors.dtype == np.float32
    assert RetinaNetAnchors().boxes_per_location == (9,) * 5


def test_retinanet_counts_on_a_non_square_input_use_ceil_grids():
    assert feature_size((480, 640), 128) == (4, 5)
    cells = sum(math.ceil(480 / s) * math.ceil(640 / s) for s in (8, 16, 32, 64, 128))
    assert RetinaNetAnchors()((480, 640)).shape == (cells * 9, 4) == (57600, 4)


def test_retinanet_first_location_holds_scales_outer_aspect_ratios_inner():
    first = RetinaNetAnchors()((512, 512))[:9]
    np.testing.assert_allclose(_centres(first), [[4.0, 4.0]] * 9)
    expected = [
        (32 * s * math.sqrt(r), 32 * s / math.sqrt(r)) for s in (1, 2 ** (1 / 3), 2 ** (2 / 3)) for r in (0.5, 1, 2)
    ]
    np.testing.assert_allclose(_sizes(first), expected, rtol=1e-6)
    np.testing.assert_allclose(
        first[0], [4 - 8 * math.sqrt(2), 4 - 16 * math.sqrt(2), 4 + 8 * math.sqrt(2), 4 + 16 * math.sqrt(2)], rtol=1e-6
    )


def test_retinanet_order_is_level_then_y_then_x_then_anchor():
    anchors = RetinaNetAnchors()((512, 512))
    np.testing.assert_allclose(_centres(anchors[[9, 64 * 9, 64 * 64 * 9]]), [[12, 4], [4, 12], [8, 8]])
    np.testing.assert_allclose(_sizes(anchors[[64 * 64 * 9 + 1]]), [[64, 64]])  # P4, scale 1, ratio 1
    np.testing.assert_allclose(_centres(anchors[-1:]), [[512 - 64, 512 - 64]])
    np.testing.assert_allclose(
        _sizes(anchors[-1:]), [[512 * 2 ** (2 / 3) * math.sqrt(2), 512 * 2 ** (2 / 3) / math.sqrt(2)]], rtol=1e-6
    )


def test_anchors_are_computed_once_and_read_only():
    config = RetinaNetAnchors(strides=(16, 32), sizes=(16.0, 32.0))
    anchors = config((64, 64))
    assert config((64, 64)) is anchors
    with pytest.raises(ValueError):
        anchors[0, 0] = 1.0


def test_retinanet_needs_one_size_per_stride():
    with pytest.raises(ValueError, match="one size per stride"):
        RetinaNetAnchors(strides=(8, 16), sizes=(32.0,))


def test_ssd_300_has_the_1917_boxes_of_mobilenet_ssd():
    boxes = SSDDefaultBoxes()((300, 300))
    assert boxes.shape == (1917, 4) and boxes.dtype == np.float32
    assert SSDDefaultBoxes().boxes_per_location == (3, 6, 6, 6, 6, 6)
    assert [feature_size((300, 300), s) for s in SSDDefaultBoxes().strides] == [
        (19, 19),
        (10, 10),
        (5, 5),
        (3, 3),
        (2, 2),
        (1, 1),
    ]


def test_ssd_scales_are_linear_with_the_extra_geometric_mean_box():
    config = SSDDefaultBoxes()
    assert config.scale_ratios(0) == [(0.1, 1.0), (0.2, 2.0), (0.2, 0.5)]
    scale, extra = 0.35, math.sqrt(0.35 * 0.5)
    np.testing.assert_allclose(
        config.scale_ratios(1), [(scale, 1.0), (scale, 2.0), (scale, 0.5), (scale, 3.0), (scale, 1 / 3), (extra, 1.0)]
    )
    assert config.scale_ratios(5)[0] == pytest.approx((0.95, 1.0))
    assert config.scale_ratios(5)[-1] == pytest.approx((math.sqrt(0.95), 1.0))


def test_ssd_boxes_of_the_first_and_last_cells():
    boxes = SSDDefaultBoxes()((300, 300))
    centre = 0.5 * 300 / 19
    np.testing.assert_allclose(boxes[0], [centre - 15, centre - 15, centre + 15, centre + 15], rtol=1e-5)
    np.testing.assert_allclose(
        _sizes(boxes[1:3]), [[60 * math.sqrt(2), 60 / math.sqrt(2)], [60 / math.sqrt(2), 60 * math.sqrt(2)]], rtol=1e-5
    )
    last = boxes[-6:]  # the 1 x 1 layer, centred on the image
    np.testing.assert_allclose(_centres(last), [[150, 150]] * 6)
    np.testing.assert_allclose(_sizes(last[[0, 5]]), [[285, 285], [300 * math.sqrt(0.95)] * 2], rtol=1e-5)


def test_ssd_box_sizes_follow_the_shorter_image_side():
    boxes = SSDDefaultBoxes()((300, 600))
    np.testing.assert_allclose(_sizes(boxes[:1]), [[30, 30]], rtol=1e-5)
    np.testing.assert_allclose(_centres(boxes[:1]), [[0.5 * 600 / 38, 0.5 * 300 / 19]], rtol=1e-5)
