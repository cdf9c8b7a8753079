"""The peak convolution built without TensorFlow, and ``tflite bench`` reporting its share of it.

No timing is asserted here (speed is measured in ``benchmarks/edge_latency.py``): the tests
check the built files, their numbers, and that the report's fields are present and consistent.
"""

import json

import numpy as np
import pytest

from tflite.audit import audit_ops
from tflite.bench import benchmark
from tflite.cli import main
from tflite.macs import count_macs
from tflite.peak import (
    PEAK_SHAPE,
    ConvShape,
    activation_quantization,
    add_peak,
    conv_model,
)
from tflite.runtime import TFLiteModel

TINY = ConvShape(height=4, width=4, in_channels=2, out_channels=3, kernel=1)
# Per output channel, the largest weight is 127 steps of 0.01, 1/127 and 0.02: every weight is exact in int8.
TINY_WEIGHTS = np.array([[1.27, -0.64], [0.32, -1.0], [-2.54, 0.02]], np.float32).reshape(3, 1, 1, 2)
TINY_BIAS = np.array([0.1, -0.25, 0.0], np.float32)
SMALL_PEAK = ConvShape(height=8, width=8, in_channels=16, out_channels=16, kernel=3)


def _conv_same(x: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Stride-1 SAME convolution of NHWC ``x`` with OHWI ``weights``, in float64."""
    k = weights.shape[1]
    padded = np.pad(x.astype(np.float64), ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    height, width = x.shape[1:3]
    out = np.zeros((*x.shape[:3], weights.shape[0])) + bias
    for i in range(k):
        for j in range(k):
            out += np.einsum("nhwc,oc->nhwo", padded[:, i : i + height, j : j + width], weights[:, i, j])
    return out


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    return TFLiteModel(model).run_raw(x)["output"]


@pytest.mark.parametrize(
    "dtype, inputs, outputs",
    [
        ("int8", ("int8", "int8", "int32"), ("int8",)),
        ("float32", ("float32", "float32", "float32"), ("float32",)),
    ],
)
def test_peak_model_holds_exactly_one_conv_2d_of_the_intended_dtypes(dtype, inputs, outputs):
    model = conv_model(PEAK_SHAPE, dtype)
    (record,) = audit_ops(model)
    assert (record.op, record.input_dtypes, record.output_dtypes) == ("CONV_2D", inputs, outputs)
    loaded = TFLiteModel(model)
    assert loaded.input_shape == (1, 28, 28, 256) and loaded.input_dtype == np.dtype(dtype)
    assert count_macs(model) == PEAK_SHAPE.macs == 28 * 28 * 256 * 3 * 3 * 256


def test_int8_weights_are_per_channel_and_the_bias_scale_is_input_times_weight_scale():
    details = {
        d["name"]: d["quantization_parameters"]
        for d in TFLiteModel(conv_model(TINY, "int8", TINY_WEIGHTS, TINY_BIAS)).interpreter.get_tensor_details()
    }
    input_scale = details["input"]["scales"][0]
    np.testing.assert_allclose(details["filter"]["scales"], [0.01, 1 / 127, 0.02], rtol=1e-6)
    assert details["filter"]["zero_points"].tolist() == [0, 0, 0] and details["filter"]["quantized_dimension"] == 0
    np.testing.assert_allclose(details["bias"]["scales"], input_scale * details["filter"]["scales"], rtol=1e-6)
    assert (input_scale, details["input"]["zero_points"][0]) == pytest.approx(activation_quantization(-1.0, 1.0))


def test_int8_conv_matches_numpy_within_one_output_step():
    model = conv_model(TINY, "int8", TINY_WEIGHTS, TINY_BIAS, input_range=(-1.0, 1.0), output_range=(-3.0, 3.0))
    input_scale, input_zero = activation_quantization(-1.0, 1.0)
    output_scale, output_zero = activation_quantization(-3.0, 3.0)
    q_input = np.random.default_rng(0).integers(-128, 128, size=(1, 4, 4, 2)).astype(np.int8)
    reference = _conv_same((q_input.astype(np.float64) - input_zero) * input_scale, TINY_WEIGHTS, TINY_BIAS)
    expected = np.clip(np.round(reference / output_scale) + output_zero, -128, 127)
    assert np.abs(_run(model, q_input).astype(np.int32) - expected).max() <= 1


@pytest.mark.parametrize("kernel", [1, 3])
def test_float_conv_matches_numpy(kernel):
    shape = ConvShape(height=5, width=4, in_channels=3, out_channels=2, kernel=kernel)
    rng = np.random.default_rng(kernel)
    weights = rng.normal(size=(2, kernel, kernel, 3)).astype(np.float32)
    bias = np.array([0.5, -1.0], np.float32)
    x = rng.normal(size=(1, 5, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(
        _run(conv_model(shape, "float32", weights, bias), x), _conv_same(x, weights, bias), rtol=1e-5, atol=1e-5
    )


def test_conv_model_rejects_an_unknown_dtype_and_mismatched_weights():
    with pytest.raises(ValueError, match="dtype must be one of"):
        conv_model(TINY, "float16")
    with pytest.raises(ValueError, match=r"weights must be \(3, 1, 1, 2\)"):
        conv_model(TINY, "int8", TINY_WEIGHTS.reshape(3, 2, 1, 1))


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_report_carries_the_peak_of_the_models_compute_dtype_and_the_exact_ratio(dtype):
    report = add_peak(benchmark(conv_model(TINY, dtype), threads=(1, 2), warmup=1, runs=3), shape=SMALL_PEAK)
    assert report["compute_dtype"] == report["peak"]["dtype"] == dtype
    assert report["peak"]["macs"] == SMALL_PEAK.macs and len(report["load_average"]) == 3
    assert [r["threads"] for r in report["peak"]["results"]] == [r["threads"] for r in report["results"]] == [1, 2]
    for row, peak in zip(report["results"], report["peak"]["results"]):
        assert row["gmacs_per_s"] > 0 and peak["gmacs_per_s"] > 0
        assert row["peak_gmacs_per_s"] == peak["gmacs_per_s"]
        assert row["peak_ratio"] == row["gmacs_per_s"] / row["peak_gmacs_per_s"]


def test_bench_command_writes_peak_and_ratio_per_thread_count(tmp_path, capsys):
    model, out = tmp_path / "conv.tflite", tmp_path / "bench.json"
    model.write_bytes(conv_model(TINY, "int8", TINY_WEIGHTS, TINY_BIAS))
    assert main(["bench", str(model), "--threads", "1,2", "--warmup", "1", "--runs", "3", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["macs"] == TINY.macs and report["peak"]["macs"] == PEAK_SHAPE.macs
    assert report["peak"]["shape"] == {"height": 28, "width": 28, "in_channels": 256, "out_channels": 256, "kernel": 3}
    for row in report["results"]:
        assert {"p50_ms", "p90_ms", "fps", "gmacs_per_s", "peak_gmacs_per_s", "peak_ratio"} <= set(row)
        assert row["peak_ratio"] == row["gmacs_per_s"] / row["peak_gmacs_per_s"] > 0
    assert "of peak" in capsys.readouterr().out


def test_bench_command_skips_the_peak_with_no_peak(tmp_path, capsys):
    model, out = tmp_path / "conv.tflite", tmp_path / "bench.json"
    model.write_bytes(conv_model(TINY, "float32", TINY_WEIGHTS, TINY_BIAS))
    assert main(["bench", str(model), "--warmup", "0", "--runs", "2", "--no-peak", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "peak" not in report and "peak_ratio" not in report["results"][0]
    assert report["compute_dtype"] == "float32" and "of peak" not in capsys.readouterr().out
