"""Semantic-segmentation metrics from one confusion matrix, the same for every form of a model.

:func:`confusion_matrix` counts pixels ``[K, K]`` (rows: true class, columns: predicted class),
leaving out pixels whose truth is the ignore index. :func:`segmentation_metrics` derives::

    IoU_k = TP_k / (TP_k + FP_k + FN_k)           (None when the class is neither true nor predicted)
    mIoU = mean of IoU_k over the classes with an IoU
    pixel_accuracy = sum_k TP_k / pixels
    mean_accuracy = mean over classes with pixels of TP_k / (pixels of class k)
    fw_iou = sum_k (pixels of class k / pixels) * IoU_k      (frequency-weighted IoU)

as Cityscapes' and mmsegmentation's scripts do (a class absent from both truth and prediction
does not count toward the mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(
    truth: np.ndarray, predicted: np.ndarray, num_classes: int, ignore_index: int | None = 255
) -> np.ndarray:
    """Pixel counts int64 ``[K, K]`` of ``truth`` (rows) against ``predicted`` (columns), same-shaped int maps.

    Pixels whose truth is ``ignore_index`` are left out; any other truth outside ``0..K-1`` raises ValueError
    (so is a prediction outside it).
    """
    truth, predicted = np.asarray(truth).ravel(), np.asarray(predicted).ravel()
    if truth.shape != predicted.shape:
        raise ValueError(f"truth has {truth.size} pixels, the prediction {predicted.size}")
    valid = truth != ignore_index if ignore_index is not None else np.ones(truth.shape, bool)
    truth, predicted = truth[valid].astype(np.int64), predicted[valid].astype(np.int64)
    for name, values in (("truth", truth), ("prediction", predicted)):
        outside = (values < 0) | (values >= num_classes)
        if outside.any():
            raise ValueError(
                f"{name} holds labels {sorted(set(values[outside].tolist()))} outside 0..{num_classes - 1}"
            )
    return np.bincount(truth * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


def segmentation_metrics(matrix: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str]) -> dict:
    """The metrics of a pixel confusion matrix (module docstring) as a JSON-ready dict::

    {"mIoU", "pixel_accuracy", "mean_accuracy", "fw_iou",
     "per_class_iou": {name: IoU or None}, "confusion_matrix": [[pixels]], "pixels": scored pixels}
    """
    matrix = np.asarray(matrix, np.int64)
    classes = len(class_names)
    if matrix.shape != (classes, classes):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for {classes} class names")
    total = int(matrix.sum())
    if not total:
        raise ValueError("no scored pixels (every pixel ignored, or no images)")
    true_positives = np.diag(matrix).astype(np.float64)
    per_truth = matrix.sum(axis=1).astype(np.float64)
    union = per_truth + matrix.sum(axis=0) - true_positives
    iou = np.divide(true_positives, union, out=np.full(classes, np.nan), where=union > 0)
    recall = np.divide(true_positives, per_truth, out=np.full(classes, np.nan), where=per_truth > 0)
    scored = ~np.isnan(iou)
    return {
        "mIoU": float(np.mean(iou[scored])),
        "pixel_accuracy": float(true_positives.sum() / total),
        "mean_accuracy": float(np.nanmean(recall)),
        "fw_iou": float(np.sum((per_truth / total)[scored] * iou[scored])),
        "per_class_iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, iou)},
        "confusion_matrix": matrix.tolist(),
        "pixels": total,
    }
