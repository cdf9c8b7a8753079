"""The int8 op audit names float ops that the converter leaves without an error."""

import numpy as np
import pytest

from tflite.audit import FloatOpError, OpRecord, audit_ops, float_ops, require_int8
from vision_core.backend import keras
from vision_core.layers.normalization import LayerNorm
from vision_core.quant.convert import convert


def _calibration():
    return [np.random.default_rng(i).normal(size=(2, 8, 8, 4)).astype("float32") for i in range(4)]


def _model(norm):
    inputs = keras.Input((8, 8, 4), name="image")
    x = keras.layers.Conv2D(8, 1, name="proj")(inputs)
    return keras.Model(inputs, norm(x), name="norm_model")


def test_keras_layer_normalization_leaves_a_float_op_and_the_audit_names_it():
    model = _model(keras.layers.LayerNormalization(name="ln"))
    with pytest.raises(FloatOpError, match=r"norm_model \(int8\): \d+ float op\(s\).*NEG"):
        convert(model, "int8", _calibration())


def test_suite_layer_norm_converts_to_all_int8_and_matches_keras():
    model = _model(LayerNorm(epsilon=1e-6, name="ln"))
    reference = _model(keras.layers.LayerNormalization(epsilon=1e-6, name="ln"))
    reference.get_layer("proj").set_weights(model.get_layer("proj").get_weights())
    x = _calibration()[0]
    np.testing.assert_allclose(model(x), reference(x), atol=1e-4)
    records = require_int8(convert(model, "int8", _calibration()))
    # scale and shift are one per-channel DEPTHWISE_CONV_2D: one rounding where MUL + ADD round twice
    assert [r.op for r in records] == [
        "CONV_2D",
        "MEAN",
        "SUB",
        "MUL",
        "MEAN",
        "ADD",
        "RSQRT",
        "MUL",
        "DEPTHWISE_CONV_2D",
    ]


def test_float_model_audit_lists_ops_with_dtypes():
    records = audit_ops(convert(_model(LayerNorm(name="ln")), "float32"))
    assert records[0].op == "CONV_2D"
    assert records[0].input_dtypes == ("float32", "float32", "float32")
    assert all(r.is_float for r in records)


def _record(index, op, dtype_in, dtype_out, inputs, outputs):
    return OpRecord(index, op, (dtype_in,), (dtype_out,), (f"t{outputs[0]}",), tuple(inputs), tuple(outputs))


def test_dequantize_is_allowed_only_when_it_feeds_nothing_but_the_postprocess_op():
    records = [
        _record(0, "CONV_2D", "int8", "int8", [0], [1]),
        _record(1, "DEQUANTIZE", "int8", "float32", [1], [2]),  # -> post-process only
        _record(2, "DEQUANTIZE", "int8", "float32", [1], [3]),  # -> post-process and ADD
        _record(3, "TFLite_Detection_PostProcess", "float32", "float32", [2, 3], [4]),
        _record(4, "ADD", "float32", "float32", [3], [5]),
    ]
    assert [(r.index, r.op) for r in float_ops(records)] == [(2, "DEQUANTIZE"), (4, "ADD")]
