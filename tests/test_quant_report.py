"""The quantization report: one evaluator applied to every form, deltas against the reference."""

import numpy as np
import pytest

from vision_core.quant.report import (
    classification_evaluator,
    compare,
    format_table,
    logit_rms_error,
    top1_agreement,
)

LABELS = np.array([0, 1, 2, 3])
FLOAT = {"predictions": np.eye(4)}  # all four right
INT8 = {"predictions": np.eye(4)[[0, 1, 2, 0]]}  # last one wrong


def test_compare_scores_every_form_with_the_same_evaluator_and_reports_deltas():
    rows = compare(
        classification_evaluator(LABELS), {"float": FLOAT, "int8": INT8}, reference="float", agreement=top1_agreement
    )
    assert rows == [
        {"form": "float", "accuracy": 1.0, "accuracy_delta": 0.0, "agreement": 1.0},
        {"form": "int8", "accuracy": 0.75, "accuracy_delta": -0.25, "agreement": 0.75},
    ]


def test_table_prints_percentages_and_signed_deltas():
    rows = compare(classification_evaluator(LABELS), {"float": FLOAT, "int8": INT8}, reference="float")
    assert format_table(rows).splitlines() == [
        "form   accuracy  accuracy_delta",
        "float  100.00    +0.00         ",
        "int8   75.00     -25.00        ",
    ]


def test_unknown_reference_and_row_mismatch_are_errors():
    with pytest.raises(KeyError, match="'qat'"):
        compare(classification_evaluator(LABELS), {"float": FLOAT}, reference="qat")
    with pytest.raises(ValueError, match="3 rows for 4 labels"):
        classification_evaluator(LABELS)({"predictions": np.eye(4)[:3]})


def test_logit_rms_error_is_the_root_mean_square_difference_of_the_class_scores():
    # INT8 differs from FLOAT in 2 of 16 entries, each by 1: sqrt(2 / 16)
    assert logit_rms_error(FLOAT, INT8) == pytest.approx(np.sqrt(2 / 16), abs=1e-12)
    assert logit_rms_error(FLOAT, {"probabilities": np.eye(4)}) == 0.0
