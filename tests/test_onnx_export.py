"""ONNX export with tf2onnx: float from the SavedModel, int8 from TFLite, outputs read by name."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tflite.runtime import TFLiteModel
from vision_core.backbones import build_backbone
from vision_core.backend import keras
from vision_core.data.synthetic import classification_set, normalize
from vision_core.export.onnx_export import (
    ONNXModel,
    check_onnx,
    export_onnx_from_saved_model,
    export_onnx_from_tflite,
    tensor_name,
)
from vision_core.export.saved_model import export_saved_model
from vision_core.quant.convert import convert

FEATURES = {"C2", "C3", "C4", "C5"}


@pytest.fixture(scope="module")
def backbone():
    """ResNet-18 at 32x32 with its four named multi-scale outputs (values of order 0.1-1)."""
    keras.utils.set_random_seed(1234)
    return build_backbone("resnet18", (32, 32, 3))


def validation_inputs(count=4):
    return normalize(classification_set(count, 32, seed=1)[0])


@pytest.mark.slow
def test_onnx_from_the_saved_model_matches_keras_by_name(backbone, tmp_path):
    version_dir = export_saved_model(backbone, tmp_path / "saved_models", "resnet18")
    path = export_onnx_from_saved_model(version_dir, tmp_path / "resnet18.onnx")
    inputs = validation_inputs()
    reference = {k: np.asarray(v) for k, v in backbone(inputs, training=False).items()}
    report = check_onnx(path, reference, inputs, atol=1e-4)
    assert set(report) == FEATURES
    onnx_input = ONNXModel(path).session.get_inputs()[0]
    assert (onnx_input.name, onnx_input.shape[1:]) == ("image", [32, 32, 3])
    assert not isinstance(onnx_input.shape[0], int), "batch stays free"


@pytest.mark.slow
def test_onnx_from_int8_tflite_follows_tflite_with_float_io_named_by_signature(backbone, tmp_path):
    calibration = normalize(classification_set(16, 32, seed=0)[0])
    tflite_path = tmp_path / "resnet18_int8.tflite"
    tflite_path.write_bytes(convert(backbone, "int8", representative_data=[calibration[:8], calibration[8:]]))
    path = export_onnx_from_tflite(tflite_path, tmp_path / "resnet18_int8.onnx")
    model = ONNXModel(path)
    assert [(i.name, i.type) for i in model.session.get_inputs()] == [("image", "tensor(float)")]
    assert set(model.output_names) == FEATURES
    assert "QuantizeLinear" in {node.op_type for node in onnx.load(str(path)).graph.node}
    inputs = validation_inputs()
    report = check_onnx(path, TFLiteModel(tflite_path)(inputs), inputs, min_cosine=0.999)
    assert set(report) == FEATURES


@pytest.mark.slow
def test_onnx_from_float_tflite_matches_tflite(backbone, tmp_path):
    tflite_path = tmp_path / "resnet18.tflite"
    tflite_path.write_bytes(convert(backbone, "float32"))
    path = export_onnx_from_tflite(tflite_path, tmp_path / "resnet18_tflite.onnx")
    inputs = validation_inputs()
    assert set(check_onnx(path, TFLiteModel(tflite_path)(inputs), inputs, atol=1e-4)) == FEATURES


@pytest.mark.slow
def test_failed_conversion_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError, match="tf2onnx failed"):
        export_onnx_from_saved_model(tmp_path / "missing", tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())


def identity_model(path, outputs):
    """An ONNX file whose input ``x:0`` float[2] is copied to each output in ``outputs`` (in that order)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x:0"], [name]) for name in outputs],
        "identity",
        [helper.make_tensor_value_info("x:0", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 2]) for name in outputs],
    )
    # IR version 8 goes with opset 17; onnx writes a newer one than onnxruntime 1.31 reads.
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_tensor_names_lose_their_output_suffix():
    assert [tensor_name(n) for n in ("logits:0", "StatefulPartitionedCall:12", "C2")] == [
        "logits",
        "StatefulPartitionedCall",
        "C2",
    ]


def test_runner_returns_outputs_by_name_whatever_their_order(tmp_path):
    x = np.array([[1.0, -2.0]], np.float32)
    outputs = ONNXModel(identity_model(tmp_path / "m.onnx", ["scores:0", "boxes:0"]))({"x": x})
    assert list(outputs) == ["scores", "boxes"]
    np.testing.assert_array_equal(outputs["boxes"], x)


def test_check_reports_per_output_and_fails_naming_the_output(tmp_path):
    path = identity_model(tmp_path / "m.onnx", ["a", "b"])
    x = np.array([[3.0, 4.0]], np.float32)
    report = check_onnx(path, {"b:0": x, "a": x + 0.5}, x)
    assert report["b"] == {"max_abs_diff": 0.0, "cosine": pytest.approx(1.0)}
    assert report["a"]["max_abs_diff"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="a: "):
        check_onnx(path, {"a": x + 0.5, "b": x}, x, atol=0.1)
    with pytest.raises(ValueError, match="outputs differ"):
        check_onnx(path, {"a": x}, x)
    # only the named outputs are held to atol: "a" is off by 0.5 and not compared
    assert check_onnx(path, {"a": x + 0.5, "b": x}, x, atol=0.1, only=["b"]) == {"b": report["b"]}
