"""Segmentation metrics on hand-computed confusion matrices, and scoring at each image's own size."""

from __future__ import annotations

import numpy as np
import pytest

from vision_core.segmentation.evaluate import class_maps, resize_scores
from vision_core.segmentation.metrics import confusion_matrix, segmentation_metrics


def test_the_confusion_matrix_counts_truth_rows_against_predicted_columns_without_ignored_pixels():
    truth = np.array([[0, 0, 1], [1, 2, 255]])
    predicted = np.array([[0, 1, 1], [2, 2, 0]])
    expected = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(confusion_matrix(truth, predicted, 3, ignore_index=255), expected)


def test_labels_outside_the_classes_are_an_error_naming_them():
    with pytest.raises(ValueError, match=r"truth holds labels \[3\] outside 0..2"):
        confusion_matrix(np.array([0, 3]), np.array([0, 0]), 3)
    with pytest.raises(ValueError, match=r"prediction holds labels \[5\] outside 0..2"):
        confusion_matrix(np.array([0, 1]), np.array([0, 5]), 3)


def test_miou_pixel_accuracy_and_frequency_weighted_iou_of_a_hand_computed_matrix():
    #            predicted: a   b   c
    matrix = np.array([[50, 10, 0], [5, 20, 5], [0, 0, 10]])  # rows: truth a (60), b (30), c (10)
    metrics = segmentation_metrics(matrix, ["a", "b", "c"])
    iou = {"a": 50 / (60 + 55 - 50), "b": 20 / (30 + 30 - 20), "c": 10 / (10 + 15 - 10)}
    assert metrics["per_class_iou"] == pytest.approx(iou)
    assert metrics["mIoU"] == pytest.approx(sum(iou.values()) / 3)
    assert metrics["pixel_accuracy"] == pytest.approx(80 / 100)
    assert metrics["mean_accuracy"] == pytest.approx((50 / 60 + 20 / 30 + 10 / 10) / 3)
    assert metrics["fw_iou"] == pytest.approx(0.6 * iou["a"] + 0.3 * iou["b"] + 0.1 * iou["c"])
    assert metrics["pixels"] == 100 and metrics["confusion_matrix"] == matrix.tolist()


def test_a_class_neither_true_nor_predicted_has_no_iou_and_does_not_count_toward_the_mean():
    matrix = np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]])
    metrics = segmentation_metrics(matrix, ["a", "b", "c"])
    assert metrics["per_class_iou"]["c"] is None
    assert metrics["mIoU"] == pytest.approx((3 / 4 + 4 / 5) / 2)
    predicted_only = segmentation_metrics(np.array([[3, 1], [0, 0]]), ["a", "b"])
    assert predicted_only["per_class_iou"] == {"a": 0.75, "b": 0.0}  # predicted but never true: IoU 0
    with pytest.raises(ValueError, match="no scored pixels"):
        segmentation_metrics(np.zeros((2, 2), int), ["a", "b"])


def test_scores_are_resized_to_each_image_before_the_arg_max():
    scores = np.zeros((2, 2, 3), np.float32)
    scores[:, 0, 0] = 1.0  # left column: class 0
    scores[:, 1, 2] = 1.0  # right column: class 2
    resized = resize_scores(scores, 4, 6)
    assert resized.shape == (4, 6, 3)
    np.testing.assert_array_equal(np.argmax(resized, -1), [[0, 0, 0, 2, 2, 2]] * 4)

    def runner(images):
        assert images.shape == (2, 8, 8, 3)  # every image stretched to the input
        return np.repeat(scores[None], len(images), 0)

    maps = class_maps(runner, [np.zeros((4, 6, 3), np.uint8), np.zeros((10, 2, 3), np.uint8)], 8, 127.5, 127.5)
    assert [m.shape for m in maps] == [(4, 6), (10, 2)]
    np.testing.assert_array_equal(maps[1], [[0, 2]] * 10)
