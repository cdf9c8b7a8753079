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


def _probabilities(scores: np.ndarray, multi_label: bool) -> np.ndarray:
    """float64 probabilities of class scores: rows that already are probabilities stay as they are (within
    :data:`~vision_core.classification.predict.PROBABILITY_TOLERANCE` of summing to 1 for softmax), logits go
    through a softmax (single-label) or a sigmoid (multi-label)."""
    from vision_core.classification.predict import PROBABILITY_TOLERANCE

    scores = np.asarray(scores, np.float64)
    in_unit_range = ((scores >= 0) & (scores <= 1)).all()
    if multi_label:
        return scores if in_unit_range else 1.0 / (1.0 + np.exp(-scores))
    if in_unit_range and np.allclose(scores.sum(axis=1), 1.0, atol=PROBABILITY_TOLERANCE):
        return scores
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def macro_roc_auc(probabilities: np.ndarray, positives: np.ndarray) -> float | None:
    """Mean one-vs-rest ROC AUC over the classes with positives and negatives (``positives`` 0/1 [N, K])."""
    from vision_core.classification.clinical import roc_auc

    values = [roc_auc(probabilities[:, k], positives[:, k]) for k in range(probabilities.shape[1])]
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def clinical_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    patient_ids: Sequence[str] | None = None,
    threshold: float | None = None,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    graded: bool = False,
    bins: int = 10,
) -> dict:
    """Every metric of :mod:`vision_core.classification.clinical` for image-level scores, and per patient.

    Args:
        scores: float [N, K], logits or probabilities (softmax for single-label, sigmoid for multi-label).
        labels: int [N] class indices, or 0/1 [N, K] multi-hot rows (multi-label).
        class_names: the K names, in score-column order.
        patient_ids: one per image; adds ``"patient"``: the same metrics of the patients' mean
            probabilities (:func:`~vision_core.classification.clinical.aggregate_by_patient`), and the
            image-level CIs resample patients.
        threshold: sensitivity/specificity (and multi-label F1) predict positive at ``probability >=
            threshold``; None: each class's Youden threshold on these scores.
        resamples, level, seed: the bootstrap CIs of ROC AUC.
        graded: the classes are ordered grades: adds ``kappa_quadratic``.
        bins: calibration bins of the ECE.

    Returns a JSON-ready dict: single-label adds to :func:`classification_metrics`' keys
    ``balanced_accuracy``, ``f1`` (``per_class`` by name, ``macro``, ``micro``), ``roc_auc`` (mean
    one-vs-rest) with ``roc_auc_ci`` (``{"low", "high"}``), ``ece``, ``per_class`` (by name:
    ``roc_auc``, ``roc_auc_ci``, ``average_precision``, ``threshold``, ``sensitivity``, ``specificity``),
    for two classes ``sensitivity``/``specificity``/``threshold`` of the second class, and ``curves`` (``roc`` and
    ``pr`` by class, ``calibration``). Multi-label: ``subset_accuracy`` (every class right),
    ``balanced_accuracy`` (mean of the classes' (sensitivity + specificity) / 2), ``f1`` at the
    thresholds, ``roc_auc``, ``roc_auc_ci``, ``ece`` (every class's probability pooled), ``per_class``,
    ``curves``, ``samples``.
    """
    labels = np.asarray(labels)
    multi_label = labels.ndim == 2
    scores = _check_scores(scores)
    if scores.shape[1] != len(class_names):
        raise ValueError(f"scores have {scores.shape[1]} classes, class_names {len(class_names)}")
    if len(labels) != len(scores):
        raise ValueError(f"{len(scores)} score rows for {len(labels)} labels")
    probabilities = _probabilities(scores, multi_label)
    options = {"threshold": threshold, "resamples": resamples, "level": level, "seed": seed, "bins": bins}
    result = _level_metrics(probabilities, labels, class_names, graded, patient_ids, **options)
    if patient_ids is not None:
        from vision_core.classification.clinical import aggregate_by_patient

        patient_probabilities, patient_labels, patients = aggregate_by_patient(probabilities, labels, patient_ids)
        result["patient"] = {
            "patients": len(patients),
            **_level_metrics(patient_probabilities, patient_labels, class_names, graded, None, **options),
        }
    return result


def _interval(bounds: list[float] | None) -> dict[str, float] | None:
    """A CI as ``{"low", "high"}`` (a dict, so ``eval``'s printout, which drops lists, keeps it)."""
    return None if bounds is None else {"low": bounds[0], "high": bounds[1]}


def _level_metrics(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    graded: bool,
    groups: Sequence[str] | None,
    *,
    threshold: float | None,
    resamples: int,
    level: float,
    seed: int,
    bins: int,
) -> dict:
    from vision_core.classification import clinical

    multi_label = labels.ndim == 2
    classes = len(class_names)
    positives = labels.astype(bool) if multi_label else labels[:, None] == np.arange(classes)[None, :]
    per_class, curves = {}, {"roc": {}, "pr": {}}
    for k, name in enumerate(class_names):
        scores, hits = probabilities[:, k], positives[:, k]
        cut = clinical.youden_threshold(scores, hits) if threshold is None else threshold
        sensitivity, specificity = (None, None) if cut is None else clinical.sensitivity_specificity(scores, hits, cut)
        per_class[name] = {
            "roc_auc": clinical.roc_auc(scores, hits),
            "roc_auc_ci": _interval(
                clinical.bootstrap_ci(clinical.roc_auc, scores, hits, resamples, level, seed, groups)
            ),
            "average_precision": clinical.average_precision(scores, hits),
            "threshold": cut,
            "sensitivity": sensitivity,
            "specificity": specificity,
            "samples": int(hits.sum()),
        }
        roc = clinical.roc_curve(scores, hits)
        curves["roc"][name] = {"fpr": roc["fpr"], "tpr": roc["tpr"]}
        pr = clinical.precision_recall_curve(scores, hits)
        curves["pr"][name] = {"precision": pr["precision"], "recall": pr["recall"]}
    result: dict = {}
    if multi_label:
        cuts = np.array([np.inf if c["threshold"] is None else c["threshold"] for c in per_class.values()])
        predicted = probabilities >= cuts[None, :]
        tp = (predicted & positives).sum(axis=0)
        fp = (predicted & ~positives).sum(axis=0)
        fn = (~predicted & positives).sum(axis=0)
        halves = [
            (c["sensitivity"] + c["specificity"]) / 2
            for c in per_class.values()
            if c["sensitivity"] is not None and c["specificity"] is not None
        ]
        calibration = clinical.calibration_bins(probabilities.reshape(-1), positives.reshape(-1), bins)
        result.update(
            subset_accuracy=float((predicted == positives).all(axis=1).mean()),
            balanced_accuracy=float(np.mean(halves)) if halves else None,
            samples=len(labels),
        )
    else:
        result.update(classification_metrics(probabilities, labels, class_names))
        matrix = np.asarray(result["confusion_matrix"])
        tp, fp, fn = clinical.confusion_counts(matrix)
        calibration = clinical.calibration_bins(
            probabilities.max(axis=1), np.argmax(probabilities, axis=1) == labels, bins
        )
        result["balanced_accuracy"] = clinical.balanced_accuracy(matrix)
        if graded:
            result["kappa_quadratic"] = clinical.quadratic_weighted_kappa(matrix)
        if classes == 2:
            positive = per_class[class_names[1]]
            result.update(
                threshold=positive["threshold"],
                sensitivity=positive["sensitivity"],
                specificity=positive["specificity"],
            )
    f1 = clinical.f1_from_counts(tp, fp, fn)
    result["f1"] = {**f1, "per_class": dict(zip(class_names, f1["per_class"]))}
    result["roc_auc"] = macro_roc_auc(probabilities, positives)
    result["roc_auc_ci"] = _interval(
        clinical.bootstrap_ci(macro_roc_auc, probabilities, positives, resamples, level, seed, groups)
    )
    result["ece"] = calibration["ece"]
    result["per_class"] = per_class
    curves["calibration"] = {key: value for key, value in calibration.items() if key != "ece"}
    result["curves"] = curves
    return result
