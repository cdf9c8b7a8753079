"""Focal, box and MultiBox losses on tiny hand-computed cases (targets as AnchorEncoder makes them)."""

import math

import numpy as np
import pytest

from vision_core.detection.losses import (
    box_regression_loss,
    focal_loss,
    hard_negatives,
    multibox_confidence_loss,
    multibox_loss,
)

LN2 = math.log(2)


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_focal_loss_at_zero_logits():
    # K = 2; anchors: class 0, background (2), ignored (-1). Every logit 0: p = 0.5, (1 - p_t)² = 1/4, CE = ln 2.
    # class-0 anchor: 0.25 * 1/4 * ln2 (its class) + 0.75 * 1/4 * ln2 (the other) = ln2 / 4;
    # background anchor: 2 * 0.75 * 1/4 * ln2 = 0.375 ln2; ignored: 0. One positive.
    loss = focal_loss([[0, 2, -1]], np.zeros((1, 3, 2), np.float32))
    assert float(loss) == pytest.approx(0.625 * LN2, rel=1e-6)


def test_focal_loss_down_weights_easy_examples():
    # One positive anchor, K = 1, logit 2: 0.25 * (1 - sigmoid(2))² * -ln(sigmoid(2)).
    p = _sigmoid(2.0)
    loss = focal_loss([[0]], [[[2.0]]])
    assert float(loss) == pytest.approx(0.25 * (1 - p) ** 2 * -math.log(p), rel=1e-5)
    # A background anchor at logit -2: p_t = 1 - sigmoid(-2), weighted by 1 - alpha = 0.75.
    loss = focal_loss([[1]], [[[-2.0]]])
    p_t = 1 - _sigmoid(-2.0)
    assert float(loss) == pytest.approx(0.75 * (1 - p_t) ** 2 * -math.log(p_t), rel=1e-5)


def test_focal_loss_is_normalised_by_the_positives_of_the_whole_batch():
    logits = np.zeros((2, 2, 2), np.float32)
    one_positive = focal_loss([[0, 2], [2, 2]], logits)
    two_positives = focal_loss([[0, 2], [1, 2]], logits)
    # At logit 0 a positive anchor costs 0.25 ln2 and a background one 0.375 ln2 (see above).
    assert float(one_positive) == pytest.approx((0.25 + 3 * 0.375) * LN2, rel=1e-6)
    assert float(two_positives) == pytest.approx((2 * 0.25 + 2 * 0.375) * LN2 / 2, rel=1e-6)


def test_box_loss_is_huber_on_positives_only():
    targets = np.zeros((1, 4, 4), np.float32)
    predictions = np.array(
        [
            [
                [0.5, 2.0, 0.0, -1.0],  # positive: 0.125 + 1.5 + 0 + 0.5
                [0.0, 0.0, 3.0, 0.0],  # positive: 2.5
                [100.0, 0.0, 0.0, 0.0],  # background: not counted
                [100.0, 0.0, 0.0, 0.0],
            ]
        ],  # ignored: not counted
        np.float32,
    )
    loss = box_regression_loss(targets, predictions, [[1, 0, 3, -1]], num_classes=3)
    assert float(loss) == pytest.approx((2.125 + 2.5) / 2, rel=1e-6)
    loss = box_regression_loss(targets, predictions, [[1, 0, 3, -1]], num_classes=3, delta=0.5)
    # delta 0.5: |0.5| -> 0.125, 2 -> 0.5 * 1.75, 1 -> 0.5 * 0.75, 3 -> 0.5 * 2.75.
    assert float(loss) == pytest.approx((0.125 + 0.875 + 0.375 + 1.375) / 2, rel=1e-6)


def test_box_loss_without_positives_is_zero():
    assert float(box_regression_loss(np.zeros((1, 2, 4)), np.ones((1, 2, 4)), [[3, -1]], num_classes=3)) == 0.0


def test_hard_negatives_take_the_highest_losses_three_per_positive():
    # K = 1: anchor 0 positive, 1-4 background, 5 ignored (highest loss, never chosen).
    targets, losses = [[0, 1, 1, 1, 1, -1]], [[9.0, 0.1, 0.9, 0.5, 0.7, 5.0]]
    np.testing.assert_array_equal(hard_negatives(targets, losses, 1), [[False, False, True, True, True, False]])
    np.testing.assert_array_equal(
        hard_negatives(targets, losses, 1, negative_ratio=1), [[False, False, True, False, False, False]]
    )


def test_hard_negatives_are_counted_per_image_and_capped_by_the_negatives():
    targets = [[0, 0, 1, 1], [1, 1, 1, 1]]  # image 0: 2 positives, 2 negatives; image 1: no positives
    losses = [[1.0, 1.0, 0.2, 0.3], [0.4, 0.1, 0.3, 0.2]]
    np.testing.assert_array_equal(
        hard_negatives(targets, losses, 1), [[False, False, True, True], [False, False, False, False]]
    )
    np.testing.assert_array_equal(
        hard_negatives(targets, losses, 1, min_negatives_per_image=2),
        [[False, False, True, True], [True, False, True, False]],
    )


def test_multibox_confidence_loss_with_hard_negative_mining():
    # K = 1, column 0 background. Positive anchor at logits (0, 0): CE ln2. Background anchors at
    # (0, ln 3): p(background) = 1/4, CE ln4; at (0, 0): CE ln2.
    logits = np.array([[[0.0, 0.0], [0.0, math.log(3)], [0.0, 0.0]]], np.float32)
    targets = [[0, 1, 1]]
    assert float(multibox_confidence_loss(targets, logits, negative_ratio=1)) == pytest.approx(3 * LN2, rel=1e-6)
    assert float(multibox_confidence_loss(targets, logits)) == pytest.approx(4 * LN2, rel=1e-6)


def test_multibox_loss_adds_smooth_l1_on_positives():
    logits = np.zeros((1, 2, 2), np.float32)  # both CE ln2
    box_targets = np.zeros((1, 2, 4), np.float32)
    box_predictions = np.array([[[0.5, 0, 0, 0], [5, 5, 5, 5]]], np.float32)
    loss = multibox_loss([[0, 1]], logits, box_targets, box_predictions, box_weight=2.0)
    assert float(loss) == pytest.approx(2 * LN2 + 2.0 * 0.125, rel=1e-6)
