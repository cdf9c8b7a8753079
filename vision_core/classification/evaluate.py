"""Classification metrics of class scores against labels, the same for every form of a model.

:func:`classification_metrics` returns a JSON-ready dict::

    {"top1": accuracy, "top5": top-k accuracy with k = min(5, K), "top5_k": k,
     "per_class_accuracy": {name: recall of that class, None without samples},
     "confusion_matrix": [[count]] rows = true class, columns = predicted class,
     "samples": N}

Scores are logits or probabilities, float [N, K]: both rank classes alike. A tie is broken
toward the lower class index (the first arg-max), for top-1 and top-k alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vision_core.quant.report import top1_agreement as _outputs_top1_agreement

TOP_K = 5


def _check_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(f"{name} must be [N, classes], got shape {scores.shape}")
    return scores


def classification_metrics(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """Top-1, top-k (k = min(5, K)), per-class recall and the confusion matrix of ``scores``.

    Args:
        scores: float [N, K], logits or probabilities, K = ``len(class_names)``.
        labels: int [N], true class indices in 0..K-1.
        class_names: the K class names, in score-column order.

    Returns:
        The dict in the module docstring.
    """
    scores = _check_scores(scores)
    labels = np.asarray(labels).reshape(-1)
    classes = len(class_names)
    if scores.shape[1] != classes:
        raise ValueError(f"scores have {scores.shape[1]} classes, class_names {classes}")
    if len(labels) != len(scores):
        raise ValueError(f"{len(scores)} score rows for {len(labels)} labels")
    if not len(labels):
        raise ValueError("no samples to score")
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels {sorted(set(labels.tolist()) - set(range(classes)))} are outside 0..{classes - 1}")
    k = min(TOP_K, classes)
    ranked = np.argsort(-scores, axis=1, kind="stable")  # stable: ties go to the lower class index
    predicted = ranked[:, 0]
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    per_class = matrix.sum(axis=1)
    recall = {
        name: (float(matrix[i, i] / per_class[i]) if per_class[i] else None) for i, name in enumerate(class_names)
    }
    return {
        "top1": float(np.mean(predicted == labels)),
        "top5": float(np.mean((ranked[:, :k] == labels[:, None]).any(axis=1))),
        "top5_k": k,
        "per_class_accuracy": recall,
        "confusion_matrix": matrix.tolist(),
        "samples": len(labels),
    }


def top1_agreement(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Fraction of rows whose arg-max class is the same in both [N, K] score arrays (e.g. float vs int8)."""
    scores_a, scores_b = _check_scores(scores_a, "scores_a"), _check_scores(scores_b, "scores_b")
    if scores_a.shape != scores_b.shape:
        raise ValueError(f"score shapes differ: {scores_a.shape} vs {scores_b.shape}")
    return _outputs_top1_agreement({"scores": scores_a}, {"scores": scores_b})
