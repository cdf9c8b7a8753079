"""Clinical metrics (vision_core.classification.clinical / evaluate.clinical_metrics), losses and plots.

Expected values are computed by hand in the comments; scores are chosen so that no float edge
case (a probability on a bin edge) decides a result.
"""

import math

import numpy as np
import pytest

from vision_core.classification import clinical
from vision_core.classification.evaluate import clinical_metrics

# class-1 probabilities of four images, two negatives then two positives:
# positive 0.35 beats negative 0.1 and loses to 0.4; positive 0.8 beats both -> AUC 3/4
SCORES = np.array([0.1, 0.4, 0.35, 0.8])
POSITIVES = np.array([0, 0, 1, 1])


def test_roc_auc_is_the_share_of_positive_negative_pairs_ranked_right():
    assert clinical.roc_auc(SCORES, POSITIVES) == 0.75


def test_roc_auc_counts_a_tie_between_a_positive_and_a_negative_as_one_half():
    # pairs: (0.5 vs 0.5) 1/2, (0.5 vs 0.2) 1, (0.9 vs 0.5) 1, (0.9 vs 0.2) 1 -> 3.5 / 4
    assert clinical.roc_auc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == 0.875


def test_roc_auc_of_one_class_only_is_undefined():
    assert clinical.roc_auc([0.2, 0.3], [1, 1]) is None
    assert clinical.roc_auc([0.2, 0.3], [0, 0]) is None


def test_average_ranks_share_ties():
    assert clinical.average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_roc_curve_has_one_point_per_distinct_score_from_the_origin():
    curve = clinical.roc_curve(SCORES, POSITIVES)
    # thresholds 0.8, 0.4, 0.35, 0.1 -> (fp, tp) = (0, 1), (1, 1), (1, 2), (2, 2)
    assert curve["fpr"] == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert curve["tpr"] == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert curve["thresholds"] == [math.inf, 0.8, 0.4, 0.35, 0.1]


def test_precision_recall_curve_and_average_precision():
    curve = clinical.precision_recall_curve(SCORES, POSITIVES)
    assert curve["precision"] == pytest.approx([1.0, 0.5, 2 / 3, 0.5], abs=1e-15)
    assert curve["recall"] == [0.5, 0.5, 1.0, 1.0]
    # AP = 0.5 * 1 + 0 * 0.5 + 0.5 * 2/3 + 0 * 0.5
    assert clinical.average_precision(SCORES, POSITIVES) == pytest.approx(0.5 + 1 / 3, abs=1e-15)
    assert clinical.average_precision(SCORES, [0, 0, 0, 0]) is None


def test_youden_threshold_takes_the_highest_of_tied_maxima():
    # J: 0.8 -> 0.5 - 0, 0.4 -> 0.5 - 0.5, 0.35 -> 1 - 0.5, 0.1 -> 1 - 1: 0.8 and 0.35 tie at 0.5
    assert clinical.youden_threshold(SCORES, POSITIVES) == 0.8
    assert clinical.sensitivity_specificity(SCORES, POSITIVES, 0.8) == (0.5, 1.0)
    assert clinical.sensitivity_specificity(SCORES, POSITIVES, 0.35) == (1.0, 0.5)
    assert clinical.sensitivity_specificity(SCORES, [1, 1, 1, 1], 0.5) == (0.25, None)  # only 0.8 >= 0.5


def test_f1_balanced_accuracy_and_their_averages_from_a_confusion_matrix():
    matrix = np.array([[3, 1], [2, 4]])  # rows true, columns predicted
    tp, fp, fn = clinical.confusion_counts(matrix)
    assert (tp.tolist(), fp.tolist(), fn.tolist()) == ([3, 4], [2, 1], [1, 2])
    f1 = clinical.f1_from_counts(tp, fp, fn)
    assert f1["per_class"] == pytest.approx([6 / 9, 8 / 11], abs=1e-15)
    assert f1["macro"] == pytest.approx(23 / 33, abs=1e-15)
    assert f1["micro"] == pytest.approx(0.7, abs=1e-15)  # = accuracy for one label per image
    assert clinical.balanced_accuracy(matrix) == pytest.approx(17 / 24, abs=1e-15)


def test_f1_of_a_class_never_seen_nor_predicted_is_undefined_and_left_out_of_the_macro():
    f1 = clinical.f1_from_counts([2, 0], [0, 0], [0, 0])
    assert f1["per_class"] == [1.0, None] and f1["macro"] == 1.0


def test_quadratic_weighted_kappa():
    matrix = np.array([[2, 1, 0], [0, 2, 1], [1, 0, 3]])
    # observed weighted disagreement 1/4 + 1/4 + 1 = 1.5; expected 34.5 / 10 -> 1 - 1.5 / 3.45 = 13/23
    assert clinical.quadratic_weighted_kappa(matrix) == pytest.approx(13 / 23, abs=1e-15)
    assert clinical.quadratic_weighted_kappa(np.diag([3, 2, 4])) == 1.0


def test_expected_calibration_error_over_equal_width_bins():
    confidence = [0.0, 0.15, 0.95, 0.85, 1.0, 0.55]
    correct = [0, 0, 1, 0, 1, 1]
    bins = clinical.calibration_bins(confidence, correct, bins=10)
    # gaps: bin 1 0.15, bin 5 0.45, bin 8 0.85, bin 9 (0.95, 1.0 both right) 0.025 x 2, bin 0 (0.0, wrong) 0
    assert bins["ece"] == pytest.approx(1.5 / 6, abs=1e-15)
    assert bins["count"] == [1, 1, 1, 1, 2]
    assert bins["bin_upper"] == [0.1, 0.2, 0.6, 0.9, 1.0]
    assert bins["accuracy"] == [0.0, 0.0, 1.0, 0.0, 1.0]


def test_bootstrap_ci_is_deterministic_per_seed_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    positives = rng.integers(0, 2, 200)
    scores = positives + rng.normal(0, 1.0, 200)
    first = clinical.bootstrap_ci(clinical.roc_auc, scores, positives, resamples=200, seed=5)
    again = clinical.bootstrap_ci(clinical.roc_auc, scores, positives, resamples=200, seed=5)
    other = clinical.bootstrap_ci(clinical.roc_auc, scores, positives, resamples=200, seed=6)
    assert first == again and first != other
    assert first[0] < clinical.roc_auc(scores, positives) < first[1]


def test_bootstrap_by_group_draws_whole_groups():
    groups = np.repeat(np.arange(10), 2)  # every group holds two samples

    def every_group_whole(samples, _labels):
        return float((np.bincount(samples.astype(int)) % 2 == 0).all())

    values = np.arange(20) // 2
    assert clinical.bootstrap_ci(every_group_whole, values, values, resamples=50, groups=groups) == [1.0, 1.0]
    assert clinical.bootstrap_ci(every_group_whole, values, values, resamples=50)[0] == 0.0


def test_bootstrap_skips_resamples_where_the_metric_is_undefined():
    assert clinical.bootstrap_ci(clinical.roc_auc, [0.1, 0.2], [1, 1], resamples=20) is None


def test_patient_aggregation_averages_probabilities_and_keeps_the_worse_label():
    probabilities = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]])
    mean, labels, patients = clinical.aggregate_by_patient(probabilities, np.array([1, 0, 0]), ["b", "a", "b"])
    assert patients == ["b", "a"]
    assert mean == pytest.approx(np.array([[0.55, 0.45], [0.6, 0.4]]), abs=1e-15)
    assert labels.tolist() == [1, 0]
    _, multi, _ = clinical.aggregate_by_patient(probabilities, np.array([[1, 0], [0, 1], [0, 0]]), ["b", "a", "b"])
    assert multi.tolist() == [[1, 0], [0, 1]]


# two images of each of two patients; class-1 probabilities are SCORES
PROBABILITIES = np.stack([1 - SCORES, SCORES], axis=1)
LABELS = np.array([0, 0, 1, 1])


def test_clinical_metrics_of_a_binary_classifier_per_image_and_per_patient():
    metrics = clinical_metrics(
        PROBABILITIES, LABELS, ("healthy", "sick"), patient_ids=["p1", "p1", "p2", "p2"], resamples=50
    )
    assert metrics["roc_auc"] == 0.75
    assert metrics["per_class"]["sick"]["roc_auc"] == metrics["per_class"]["healthy"]["roc_auc"] == 0.75
    assert (metrics["threshold"], metrics["sensitivity"], metrics["specificity"]) == (0.8, 0.5, 1.0)
    # arg-max predicts [0, 0, 0, 1]: confusion [[2, 0], [1, 1]]
    assert metrics["confusion_matrix"] == [[2, 0], [1, 1]]
    assert metrics["top1"] == 0.75 and metrics["balanced_accuracy"] == 0.75
    assert metrics["f1"]["per_class"] == pytest.approx({"healthy": 0.8, "sick": 2 / 3}, abs=1e-15)
    assert metrics["f1"]["micro"] == 0.75
    ci = metrics["roc_auc_ci"]
    assert set(ci) == {"low", "high"} and ci["low"] <= ci["high"]
    # patients: p1 mean sick 0.25 (healthy), p2 0.575 (sick) -> perfectly ranked
    assert metrics["patient"]["patients"] == 2 and metrics["patient"]["roc_auc"] == 1.0
    assert metrics["patient"]["confusion_matrix"] == [[1, 0], [0, 1]]
    assert metrics["curves"]["roc"]["sick"]["fpr"] == [0.0, 0.0, 0.5, 0.5, 1.0]


def test_clinical_metrics_take_logits_like_their_probabilities():
    logits = np.log(PROBABILITIES)
    from_logits = clinical_metrics(logits, LABELS, ("healthy", "sick"), resamples=0)
    from_probabilities = clinical_metrics(PROBABILITIES, LABELS, ("healthy", "sick"), resamples=0)
    assert from_logits["roc_auc"] == from_probabilities["roc_auc"] and from_logits["roc_auc_ci"] is None
    assert from_logits["threshold"] == pytest.approx(0.8, abs=1e-7)


def test_a_fixed_threshold_and_graded_labels():
    metrics = clinical_metrics(PROBABILITIES, LABELS, ("grade0", "grade1"), threshold=0.35, graded=True, resamples=0)
    assert (metrics["sensitivity"], metrics["specificity"]) == (1.0, 0.5)
    # confusion [[2, 0], [1, 1]]: weights 0/1, observed 1, expected (2*3 + 2*1) / 4 = 2 -> 1 - 1/2
    assert metrics["kappa_quadratic"] == 0.5


def test_multi_label_metrics_threshold_each_class():
    probabilities = np.array([[0.9, 0.2], [0.7, 0.6], [0.1, 0.8], [0.3, 0.1]])
    labels = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    metrics = clinical_metrics(probabilities, labels, ("effusion", "nodule"), threshold=0.5, resamples=0)
    assert metrics["roc_auc"] == 1.0 and metrics["subset_accuracy"] == 1.0
    assert metrics["f1"]["macro"] == 1.0 and metrics["balanced_accuracy"] == 1.0
    assert "confusion_matrix" not in metrics and metrics["samples"] == 4
    shifted = clinical_metrics(probabilities, labels, ("effusion", "nodule"), threshold=0.65, resamples=0)
    # nodule at 0.65: predicted [0, 0, 1, 0] for truth [0, 1, 1, 0] -> tp 1, fn 1 -> F1 2/3; effusion stays 1
    assert shifted["f1"]["per_class"] == pytest.approx({"effusion": 1.0, "nodule": 2 / 3}, abs=1e-15)
    assert shifted["per_class"]["nodule"]["sensitivity"] == 0.5 and shifted["subset_accuracy"] == 0.75


def test_roc_pr_and_calibration_plots_are_pngs(tmp_path):
    from vision_core.classification.plots import plot_calibration, plot_pr_curves, plot_roc_curves

    metrics = clinical_metrics(PROBABILITIES, LABELS, ("healthy", "sick"), patient_ids=["a", "a", "b", "b"])
    for plot, name in ((plot_roc_curves, "roc"), (plot_pr_curves, "pr"), (plot_calibration, "calibration")):
        path = plot(metrics, tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
