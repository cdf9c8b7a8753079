"""Clinical metrics of a classifier's probabilities: ROC and PR, thresholds, F1, kappa, calibration, patients.

Every function takes numpy arrays and returns plain Python numbers or lists, exactly as the
formulas below say (the tests check them against hand-computed values):

* ROC AUC: the Mann-Whitney statistic, ``(sum of the positives' ranks - P(P+1)/2) / (P N)`` with
  tied scores given their average rank (a tie between a positive and a negative counts one half).
  None when the scores hold only positives or only negatives.
* ROC curve: one point per distinct score ``t`` (descending), predicting positive when
  ``score >= t``, starting at (0, 0). PR curve and average precision:
  ``AP = sum_i (R_i - R_{i-1}) P_i`` over the same thresholds (scikit-learn's step rule, no
  interpolation).
* Bootstrap CI: ``resamples`` draws with replacement, of samples or, given ``groups``, of whole
  groups (patients: a patient's images stay together), from ``numpy.random.default_rng(seed)``;
  a draw where the metric is undefined (one class only) is skipped, not redrawn; the CI is the
  ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the rest (numpy's linear rule).
* Youden's J: the threshold among the distinct scores that maximises sensitivity + specificity - 1
  (the highest such threshold on a tie).
* F1 from counts: ``2 TP / (2 TP + FP + FN)``; None when the class has neither samples nor
  predictions. Macro: mean over the classes where it is defined; micro: from the summed counts.
* Quadratic-weighted kappa: ``1 - sum(W O) / sum(W E)`` with ``W_ij = (i - j)^2 / (K - 1)^2``,
  ``O`` the confusion matrix and ``E`` the outer product of its marginals over N.
* Expected calibration error: ``sum_b |B_b| / N * |accuracy_b - confidence_b|`` over
  ``bins`` equal-width bins of the confidence, ``(b/bins, (b+1)/bins]`` (0 falls in the first).
* Patients: :func:`aggregate_by_patient` averages a patient's probabilities (images in the order
  their patients first appear).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _binary(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, np.float64).reshape(-1)
    positives = np.asarray(positives).reshape(-1).astype(bool)
    if len(scores) != len(positives):
        raise ValueError(f"{len(scores)} scores for {len(positives)} labels")
    return scores, positives


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (float [N]), ties sharing their average rank."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), np.float64)
    ranks[order] = ((starts + ends - 1) / 2 + 1)[group]
    return ranks


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` (float [N]) for the 0/1 ``positives`` [N]; None with one class."""
    scores, positives = _binary(scores, positives)
    count, total = int(positives.sum()), len(positives)
    if count in (0, total):
        return None
    ranks = average_ranks(scores)
    return float((ranks[positives].sum() - count * (count + 1) / 2) / (count * (total - count)))


def _counts_at_thresholds(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds descending, true positives, false positives)`` predicting ``score >= threshold``."""
    order = np.argsort(-scores, kind="mergesort")
    ordered, hits = scores[order], positives[order]
    last_of_value = np.r_[ordered[1:] != ordered[:-1], True]
    true_positives = np.cumsum(hits)[last_of_value]
    false_positives = np.cumsum(~hits)[last_of_value]
    return ordered[last_of_value], true_positives, false_positives


def roc_curve(scores: np.ndarray, positives: np.ndarray) -> dict[str, list[float]]:
    """``{"fpr", "tpr", "thresholds"}``: (0, 0) then one point per distinct score, descending (threshold inf first)."""
    scores, positives = _binary(scores, positives)
    thresholds, tp, fp = _counts_at_thresholds(scores, positives)
    count = positives.sum()
    tpr = tp / count if count else np.zeros(len(tp))
    fpr = fp / (len(positives) - count) if len(positives) > count else np.zeros(len(fp))
    return {
        "fpr": [0.0, *fpr.tolist()],
        "tpr": [0.0, *tpr.tolist()],
        "thresholds": [float("inf"), *thresholds.tolist()],
    }


def precision_recall_curve(scores: np.ndarray, positives: np.ndarray) -> dict[str, list[float]]:
    """``{"precision", "recall", "thresholds"}``, one point per distinct score, descending."""
    scores, positives = _binary(scores, positives)
    thresholds, tp, fp = _counts_at_thresholds(scores, positives)
    count = max(int(positives.sum()), 1)
    return {
        "precision": (tp / (tp + fp)).tolist(),
        "recall": (tp / count).tolist(),
        "thresholds": thresholds.tolist(),
    }


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """``sum_i (R_i - R_{i-1}) P_i`` over the distinct thresholds; None without positives."""
    scores, positives = _binary(scores, positives)
    if not positives.any():
        return None
    curve = precision_recall_curve(scores, positives)
    recall = np.r_[0.0, curve["recall"]]
    return float(np.sum(np.diff(recall) * np.asarray(curve["precision"])))


def youden_threshold(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """The score threshold maximising Youden's J (sensitivity + specificity - 1); None with one class."""
    scores, positives = _binary(scores, positives)
    count = int(positives.sum())
    if count in (0, len(positives)):
        return None
    thresholds, tp, fp = _counts_at_thresholds(scores, positives)
    j = tp / count - fp / (len(positives) - count)
    return float(thresholds[int(np.argmax(j))])


def sensitivity_specificity(
    scores: np.ndarray, positives: np.ndarray, threshold: float
) -> tuple[float | None, float | None]:
    """``(sensitivity, specificity)`` predicting positive when ``score >= threshold``; None where undefined."""
    scores, positives = _binary(scores, positives)
    predicted = scores >= threshold
    sensitivity = float(predicted[positives].mean()) if positives.any() else None
    specificity = float((~predicted[~positives]).mean()) if (~positives).any() else None
    return sensitivity, specificity


def bootstrap_ci(
    metric,
    scores: np.ndarray,
    labels: np.ndarray,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: Sequence | None = None,
) -> list[float] | None:
    """``[low, high]`` percentile CI of ``metric(scores, labels)`` over bootstrap resamples (module docstring).

    ``scores`` and ``labels`` are resampled together along their first axis; ``groups``: one id per
    sample, whole groups are drawn. Resamples where ``metric`` is None are skipped; None when every
    one is (or ``resamples`` is 0).
    """
    scores, labels = np.asarray(scores), np.asarray(labels)
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} score rows for {len(labels)} labels")
    rng = np.random.default_rng(seed)
    members = None
    if groups is not None:
        _, inverse = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
        order = np.argsort(inverse, kind="mergesort")
        members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    values = []
    for _ in range(resamples):
        if members is None:
            index = rng.integers(0, len(scores), len(scores))
        else:
            index = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        value = metric(scores[index], labels[index])
        if value is not None:
            values.append(value)
    if not values:
        return None
    low, high = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return [float(low), float(high)]


def f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, object]:
    """``{"per_class": [F1 or None], "macro": mean of the defined ones or None, "micro": F1 of the sums}``."""
    tp, fp, fn = (np.asarray(a, np.float64) for a in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    per_class = [float(2 * t / d) if d else None for t, d in zip(tp, denominator)]
    defined = [v for v in per_class if v is not None]
    total = 2 * tp.sum() + fp.sum() + fn.sum()
    return {
        "per_class": per_class,
        "macro": float(np.mean(defined)) if defined else None,
        "micro": float(2 * tp.sum() / total) if total else None,
    }


def confusion_counts(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(TP, FP, FN)`` per class [K] of a confusion matrix (rows true, columns predicted)."""
    matrix = np.asarray(matrix)
    tp = np.diag(matrix)
    return tp, matrix.sum(axis=0) - tp, matrix.sum(axis=1) - tp


def balanced_accuracy(matrix: np.ndarray) -> float:
    """Mean recall over the classes with samples, of a confusion matrix (rows true, columns predicted)."""
    matrix = np.asarray(matrix, np.float64)
    totals = matrix.sum(axis=1)
    present = totals > 0
    return float(np.mean(np.diag(matrix)[present] / totals[present]))


def quadratic_weighted_kappa(matrix: np.ndarray) -> float | None:
    """Cohen's kappa with quadratic weights of a K x K confusion matrix of ordered grades; None if undefined."""
    observed = np.asarray(matrix, np.float64)
    classes = len(observed)
    if classes < 2 or not observed.sum():
        return None
    grades = np.arange(classes)
    weights = (grades[:, None] - grades[None, :]) ** 2 / (classes - 1) ** 2
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    chance = float((weights * expected).sum())
    return None if chance == 0 else 1.0 - float((weights * observed).sum()) / chance


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> dict[str, object]:
    """Reliability of ``confidence`` (float [N] in [0, 1]) against ``correct`` (0/1 [N]).

    Returns ``{"ece", "confidence": [mean per non-empty bin], "accuracy": [...], "count": [...],
    "bin_upper": [upper edge of each of those bins]}`` (bins as in the module docstring).
    """
    confidence = np.asarray(confidence, np.float64).reshape(-1)
    correct = np.asarray(correct, np.float64).reshape(-1)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows: dict[str, list] = {"confidence": [], "accuracy": [], "count": [], "bin_upper": []}
    ece = 0.0
    for b in range(bins):
        members = index == b
        if not members.any():
            continue
        mean_confidence, accuracy = float(confidence[members].mean()), float(correct[members].mean())
        ece += members.sum() / len(confidence) * abs(accuracy - mean_confidence)
        rows["confidence"].append(mean_confidence)
        rows["accuracy"].append(accuracy)
        rows["count"].append(int(members.sum()))
        rows["bin_upper"].append((b + 1) / bins)
    return {"ece": float(ece), **rows}


def aggregate_by_patient(
    probabilities: np.ndarray, labels: np.ndarray, patient_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-patient ``(mean probabilities [P, K], labels, patient ids)``, patients in order of first appearance.

    A patient's label: multi-label (labels [N, K]) the union of its images' (any image positive);
    single-label (labels [N]) the highest class index among its images: the worse eye when the
    classes are ordered by severity (DR grades, non-referable < referable).
    """
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    ids = [str(p) for p in patient_ids]
    if not len(ids) == len(probabilities) == len(labels):
        raise ValueError(f"{len(probabilities)} probability rows, {len(labels)} labels, {len(ids)} patient ids")
    patients = list(dict.fromkeys(ids))
    position = {patient: i for i, patient in enumerate(patients)}
    index = np.array([position[p] for p in ids])
    counts = np.bincount(index, minlength=len(patients))
    sums = np.zeros((len(patients), probabilities.shape[1]))
    np.add.at(sums, index, probabilities)
    if labels.ndim == 2:
        patient_labels = np.zeros((len(patients), labels.shape[1]), labels.dtype)
    else:
        patient_labels = np.full(len(patients), -1, labels.dtype)
    np.maximum.at(patient_labels, index, labels)
    return sums / counts[:, None], patient_labels, patients
