"""The backbone int8 benchmark's table and its verdict on the target (agreement >= 99 %, accuracy within 1 point)."""

import numpy as np

from vision_core.quant.int8_check import agreement_table, meets_target, shapes_data


def _result(name, epochs, float_accuracy, qat_int8, cosines, probability_error=None, cycles=None):
    """A ``benchmarks/backbone_int8.py`` result; ``qat_int8`` = (accuracy, agreement); other forms equal float."""

    def form(label, accuracy, agreement):
        return {"form": label, "top1": accuracy, "top1_delta": accuracy - float_accuracy, "agreement": agreement}

    result = {
        "backbone": name,
        "epochs": epochs,
        "ptq_int8_feature_cosine": cosines,
        "forms": [
            form("float", float_accuracy, 1.0),
            form("ptq_int8.tflite", float_accuracy, 1.0),
            form("qat_keras", float_accuracy, 1.0),
            form("qat_int8.tflite", *qat_int8),
        ],
    }
    if probability_error is not None:
        result["forms"][-1]["probability_rms_error"] = probability_error
    if cycles is not None:
        result["cycles"] = cycles
    return result


COSINES = {"C2": 0.9991, "C3": 0.9987, "C4": 0.9995, "C5": 0.9999}


def test_the_target_holds_at_its_bounds_and_fails_past_either():
    assert meets_target(_result("a", 3, 0.9750, (0.9850, 0.99), COSINES))  # 396 of 400 agree, +1.00 point
    assert meets_target(_result("a", 3, 0.9750, (0.9650, 0.99), COSINES))  # -1.00 point
    assert not meets_target(_result("a", 3, 0.9750, (0.9750, 0.9875), COSINES))  # 395 of 400
    assert not meets_target(_result("a", 3, 0.9750, (0.9625, 0.9950), COSINES))  # -1.25 points


def test_table_lists_every_form_the_lowest_cosine_and_the_verdict():
    results = [
        _result("resnet18", 3, 1.0, (1.0, 1.0), COSINES, probability_error=0.0412),
        _result("mobilenet_v2", 6, 0.9750, (0.9725, 0.9875), {**COSINES, "C3": 0.9943}),  # older: no error
        _result("revcol_s", 3, 0.9900, (0.9900, 0.9950), COSINES, probability_error=0.25, cycles=2),
    ]
    assert agreement_table(results) == "\n".join(
        [
            "| backbone | epochs | float | PTQ int8 | QAT Keras | QAT int8 | QAT int8 probability error "
            "| min PTQ cosine | target |",
            "|---|---|---|---|---|---|---|---|---|",
            "| resnet18 | 3 | 100.00 | 100.00 (100.00) | 100.00 (100.00) | 100.00 (100.00) | 0.0412 | 0.9987 | met |",
            "| mobilenet_v2 | 6 | 97.50 | 97.50 (100.00) | 97.50 (100.00) | 97.25 (98.75) | - | 0.9943 (C3) | missed |",
            "| revcol_s | 3 x 2 | 99.00 | 99.00 (100.00) | 99.00 (100.00) | 99.00 (99.50) | 0.2500 | 0.9987 | met |",
        ]
    )


def test_a_larger_held_out_set_starts_with_the_400_every_row_is_scored_on():
    x400, y400 = shapes_data(400, 16, seed=99)  # the shapes' val seed (vision_core.data.classification.shapes)
    x1000, y1000 = shapes_data(1000, 16, seed=99)
    assert x400.shape == (400, 16, 16, 3) and x1000.shape == (1000, 16, 16, 3)
    np.testing.assert_array_equal(x1000[:400], x400)
    np.testing.assert_array_equal(y1000[:400], y400)
    assert not np.array_equal(x1000[400:800], x400)
