"""Box formats, IoU, anchor matching, the box encoding and the anchor encoder (xyxy pixels throughout)."""

import math

import numpy as np
import pytest

from vision_core.backend import tf
from vision_core.detection.boxes import (
    BOX_SCALES,
    IGNORE,
    IGNORED,
    NEGATIVE,
    POSITIVE,
    AnchorEncoder,
    convert_format,
    decode_boxes,
    encode_boxes,
    match_anchors,
    pairwise_iou,
    to_normalized,
    to_pixels,
)

BOX_XYXY = [10.0, 20.0, 30.0, 60.0]
SAME_BOX = {
    "xyxy": BOX_XYXY,
    "xywh": [10.0, 20.0, 20.0, 40.0],
    "cxcywh": [20.0, 40.0, 20.0, 40.0],
    "yxyx": [20.0, 10.0, 60.0, 30.0],
}

# Hand-made matching case. G0 = (0, 0, 10, 10), G1 = (100, 100, 110, 110); IoU of each anchor:
GT_BOXES = [[0, 0, 10, 10], [100, 100, 110, 110]]
ANCHORS = [
    [0, 0, 10, 10],  # G0: 1          -> positive
    [0, 0, 10, 22],  # G0: 100/220    -> ignored by RetinaNet, negative for SSD
    [5, 0, 15, 10],  # G0: 50/150     -> negative
    [104, 100, 114, 110],  # G1: 60/140     -> ignored band, but G1's best anchor: forced positive
    [200, 200, 210, 210],
]  # none           -> negative


@pytest.mark.parametrize("target", list(SAME_BOX))
def test_convert_format_from_xyxy(target):
    np.testing.assert_allclose(convert_format([BOX_XYXY], "xyxy", target), [SAME_BOX[target]])


@pytest.mark.parametrize("source", list(SAME_BOX))
def test_convert_format_to_xyxy(source):
    np.testing.assert_allclose(convert_format([SAME_BOX[source]], source, "xyxy"), [BOX_XYXY])


def test_convert_format_rejects_unknown_formats():
    with pytest.raises(ValueError, match="unknown box format 'ltrb'"):
        convert_format([BOX_XYXY], "xyxy", "ltrb")


def test_normalisation_divides_x_by_width_and_y_by_height():
    image_size = (100, 200)  # (height, width)
    np.testing.assert_allclose(to_normalized([BOX_XYXY], image_size), [[0.05, 0.2, 0.15, 0.6]])
    np.testing.assert_allclose(to_normalized([SAME_BOX["yxyx"]], image_size, "yxyx"), [[0.2, 0.05, 0.6, 0.15]])
    np.testing.assert_allclose(to_pixels([[0.05, 0.2, 0.15, 0.6]], image_size), [BOX_XYXY], rtol=1e-6)


def test_pairwise_iou_of_hand_made_boxes():
    a = [[0, 0, 10, 10], [0, 0, 0, 10]]  # the second has no area
    b = [[0, 0, 10, 10], [5, 5, 15, 15], [0, 0, 10, 5], [20, 20, 30, 30]]
    np.testing.assert_allclose(pairwise_iou(a, b), [[1.0, 25 / 175, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]], rtol=1e-6)


def test_pairwise_iou_handles_no_boxes():
    assert pairwise_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_encode_hand_made_box():
    # Anchor centre (5, 5), 10 x 10; box centre (10, 10), 10 wide, 20 high.
    encoded = encode_boxes([[5, 0, 15, 20]], [[0, 0, 10, 10]])
    np.testing.assert_allclose(encoded, [[10 * 5 / 10, 10 * 5 / 10, 5 * math.log(2), 0.0]], rtol=1e-6)


@pytest.mark.parametrize("scales", [BOX_SCALES, (1.0, 1.0, 1.0, 1.0)])
def test_encode_then_decode_round_trips(scales):
    rng = np.random.default_rng(0)

    def random_boxes(n):
        corner = rng.uniform(0, 400, (n, 2))
        return np.concatenate([corner, corner + rng.uniform(2, 200, (n, 2))], axis=1).astype(np.float32)

    boxes, anchors = random_boxes(1000), random_boxes(1000)
    # float32 at up to 600 px: 1e-4 is about two units in the last place.
    np.testing.assert_allclose(decode_boxes(encode_boxes(boxes, anchors, scales), anchors, scales), boxes, atol=1e-4)
    boxes, anchors = boxes / 600, anchors / 600
    np.testing.assert_allclose(decode_boxes(encode_boxes(boxes, anchors, scales), anchors, scales), boxes, atol=1e-5)


def test_encoding_is_the_same_against_pixel_or_normalised_anchors():
    image_size = (300, 500)
    box, anchor = [[40, 30, 200, 90]], [[50, 20, 150, 120]]
    np.testing.assert_allclose(
        encode_boxes(box, anchor),
        encode_boxes(to_normalized(box, image_size), to_normalized(anchor, image_size)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_match_anchors_retinanet_thresholds():
    matched, state = match_anchors(ANCHORS, GT_BOXES, 0.5, 0.4)
    np.testing.assert_array_equal(state, [POSITIVE, IGNORED, NEGATIVE, POSITIVE, NEGATIVE])
    assert matched.numpy()[0] == 0 and matched.numpy()[3] == 1


def test_match_anchors_ssd_thresholds_leave_no_ignored_band():
    _, state = match_anchors(ANCHORS, GT_BOXES, 0.5, 0.5)
    np.testing.assert_array_equal(state, [POSITIVE, NEGATIVE, NEGATIVE, POSITIVE, NEGATIVE])


def test_match_anchors_without_forcing_leaves_a_box_unmatched():
    _, state = match_anchors(ANCHORS, GT_BOXES, 0.5, 0.4, force_best_anchor=False)
    np.testing.assert_array_equal(state, [POSITIVE, IGNORED, NEGATIVE, IGNORED, NEGATIVE])


def test_match_anchors_without_boxes_makes_everything_negative():
    matched, state = match_anchors(ANCHORS, np.zeros((0, 4), np.float32))
    np.testing.assert_array_equal(state, [NEGATIVE] * 5)
    np.testing.assert_array_equal(matched, [0] * 5)


def _image():
    return np.zeros((120, 220, 3), np.uint8)


def test_anchor_encoder_targets_of_the_hand_made_case():
    encoder = AnchorEncoder(ANCHORS, image_size=(120, 220), num_classes=3)
    targets = encoder(_image(), GT_BOXES, [2, 0])
    np.testing.assert_array_equal(targets["class_targets"], [2, IGNORE, 3, 0, 3])
    # G1 (centre 105, 105) against anchor 3 (centre 109, 105), both 10 x 10: tx = 10 * -4 / 10.
    np.testing.assert_allclose(
        targets["box_targets"], [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, -4, 0, 0], [0, 0, 0, 0]], atol=1e-6
    )
    assert targets["box_targets"].dtype == tf.float32 and targets["class_targets"].dtype == tf.int32


def test_anchor_encoder_drops_boxes_without_area():
    encoder = AnchorEncoder(ANCHORS, image_size=(120, 220), num_classes=3)
    targets = encoder(_image(), [[0, 0, 10, 10], [200, 200, 200, 210]], [1, 2])
    np.testing.assert_array_equal(targets["class_targets"], [1, IGNORE, 3, 3, 3])


def test_anchor_encoder_runs_in_tf_data_with_any_number_of_boxes():
    encoder = AnchorEncoder(ANCHORS, image_size=(120, 220), num_classes=3)
    samples = [(GT_BOXES, [2, 0]), (np.zeros((0, 4)), np.zeros((0,)))]
    dataset = tf.data.Dataset.from_generator(
        lambda: ((_image(), np.asarray(b, np.float32), np.asarray(c, np.int32)) for b, c in samples),
        output_signature=(
            tf.TensorSpec((120, 220, 3), tf.uint8),
            tf.TensorSpec((None, 4), tf.float32),
            tf.TensorSpec((None,), tf.int32),
        ),
    )
    results = list(dataset.map(encoder).as_numpy_iterator())
    np.testing.assert_array_equal(results[0]["class_targets"], [2, IGNORE, 3, 0, 3])
    np.testing.assert_array_equal(results[1]["class_targets"], [3] * 5)
    np.testing.assert_array_equal(results[1]["box_targets"], np.zeros((5, 4)))


def test_anchor_encoder_rejects_an_image_of_another_size():
    encoder = AnchorEncoder(ANCHORS, image_size=(120, 220), num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image size differs"):
        encoder(np.zeros((100, 220, 3), np.uint8), GT_BOXES, [2, 0])
