"""SavedModel export for TF Serving: versions, atomicity, both signatures, models.config."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
)
from tiny_models import SIZE, tiny_classifier

from vision_core.backend import keras, tf
from vision_core.data.synthetic import classification_set, normalize
from vision_core.export.saved_model import MINUS_ONE_TO_ONE, export_saved_model
from vision_core.export.serving_config import write_models_config


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(keras model, loaded SavedModel, version folder) of one export."""
    model = tiny_classifier()
    version_dir = export_saved_model(model, tmp_path_factory.mktemp("saved_models"))
    return model, tf.saved_model.load(str(version_dir)), version_dir


def images(count=3, size=SIZE, seed=0):
    return classification_set(count, size, seed=seed)[0]


def png(image):
    """uint8 RGB HxWx3 -> PNG bytes (OpenCV writes BGR)."""
    return cv2.imencode(".png", image[..., ::-1])[1].tobytes()


def jpeg(image, quality=90):
    return cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def serve_bytes(loaded, encoded):
    return {k: v.numpy() for k, v in loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded)).items()}


def serve_pixels(loaded, pixels):
    image = tf.constant(MINUS_ONE_TO_ONE(np.asarray(pixels, np.float32)))
    return {k: v.numpy() for k, v in loaded.signatures["serving_default"](image=image).items()}


def assert_outputs_close(actual, expected, atol=1e-6):
    """Same output names, values within ``atol`` (the tiny classifier's logits are of order 0.01-0.1)."""
    assert set(actual) == set(expected)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], atol=atol, rtol=0, err_msg=name)


def test_normalization_is_the_suites_uint8_to_minus_one_one_mapping():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    np.testing.assert_allclose(MINUS_ONE_TO_ONE(pixels.astype(np.float32)), normalize(pixels), atol=1e-6, rtol=0)


def test_versions_count_up_and_never_overwrite(tmp_path):
    model = tiny_classifier()
    first = export_saved_model(model, tmp_path, "classifier")
    first_graph = (first / "saved_model.pb").read_bytes()
    second = export_saved_model(model, tmp_path, "classifier")
    assert (first, second) == (tmp_path / "classifier" / "1", tmp_path / "classifier" / "2")
    assert (first / "saved_model.pb").read_bytes() == first_graph
    assert sorted(p.name for p in (tmp_path / "classifier").iterdir()) == ["1", "2"]


def test_next_version_follows_the_highest_numeric_folder(tmp_path):
    (tmp_path / "classifier" / "7").mkdir(parents=True)
    (tmp_path / "classifier" / "notes").mkdir()
    assert export_saved_model(tiny_classifier(), tmp_path, "classifier") == tmp_path / "classifier" / "8"


def test_model_name_defaults_to_the_keras_name_and_must_be_a_plain_folder_name(tmp_path):
    assert export_saved_model(tiny_classifier(), tmp_path).parent.name == "tiny_classifier"
    with pytest.raises(ValueError, match="model name"):
        export_saved_model(tiny_classifier(), tmp_path, "../outside")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_classifier"]


def test_model_without_a_fixed_input_size_is_rejected(tmp_path):
    inputs = keras.Input((None, None, 3), name="image")
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="conv")(inputs), name="any_size")
    with pytest.raises(ValueError, match="fixed input size"):
        export_saved_model(model, tmp_path)
    assert not any(tmp_path.iterdir())


def test_failed_export_of_a_new_model_leaves_no_folder(tmp_path):
    def broken_postprocess(outputs):
        raise RuntimeError("decoder exploded")

    with pytest.raises(RuntimeError, match="decoder exploded"):
        export_saved_model(tiny_classifier(), tmp_path, "classifier", postprocess=broken_postprocess)
    assert not any(tmp_path.iterdir())


def test_failed_write_leaves_existing_versions_alone_and_no_partial_one(tmp_path, monkeypatch):
    model = tiny_classifier()
    export_saved_model(model, tmp_path, "classifier")

    def write_half_then_fail(obj, export_dir, *args, **kwargs):
        Path(export_dir, "saved_model.pb").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, tmp_path, "classifier")
    assert sorted(p.name for p in (tmp_path / "classifier").iterdir()) == ["1"]


@pytest.mark.slow
def test_saved_model_cli_lists_both_signatures(served):
    cli = Path(sys.executable).parent / "saved_model_cli"
    shown = subprocess.run(
        [str(cli), "show", "--dir", str(served[2]), "--all"], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    signatures = {block.split("']", 1)[0]: block for block in shown.split("signature_def['")[1:]}
    assert {"serving_default", "serving_bytes"} <= set(signatures)
    default, encoded = signatures["serving_default"], signatures["serving_bytes"]
    assert "inputs['image'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 32, 32, 3)" in default
    assert "inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in encoded
    for block in (default, encoded):
        assert "outputs['logits'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 4)" in block
        assert "Method name is: tensorflow/serving/predict" in block


def test_serving_default_equals_the_keras_model(served):
    model, loaded, _ = served
    pixels = images()
    expected = {"logits": np.asarray(model(normalize(pixels), training=False))}
    assert_outputs_close(serve_pixels(loaded, pixels), expected)


def test_png_bytes_give_the_outputs_of_the_decoded_normalised_pixels(served):
    pixels = images()
    assert_outputs_close(serve_bytes(served[1], [png(p) for p in pixels]), serve_pixels(served[1], pixels))


def test_jpeg_bytes_are_decoded_exactly_like_opencv(served):
    encoded = [jpeg(p) for p in images()]
    decoded = np.stack([cv2.imdecode(np.frombuffer(e, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for e in encoded])
    assert_outputs_close(serve_bytes(served[1], encoded), serve_pixels(served[1], decoded))


def test_other_sizes_are_resized_bilinear_like_opencv_on_float_pixels(served):
    tall = np.ascontiguousarray(images(1, size=48, seed=1)[0][:, :40])
    small_jpeg = jpeg(images(1, size=24, seed=2)[0], quality=100)
    decoded = [tall, cv2.imdecode(np.frombuffer(small_jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]]
    resized = np.stack(
        [cv2.resize(p.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) for p in decoded]
    )
    assert_outputs_close(serve_bytes(served[1], [png(tall), small_jpeg]), serve_pixels(served[1], resized))


def test_postprocess_shapes_the_outputs_of_both_signatures(tmp_path):
    def add_probabilities(outputs):
        return {**outputs, "probabilities": tf.nn.softmax(outputs["logits"])}

    loaded = tf.saved_model.load(str(export_saved_model(tiny_classifier(), tmp_path, postprocess=add_probabilities)))
    pixels = images(2)
    for outputs in (serve_pixels(loaded, pixels), serve_bytes(loaded, [png(p) for p in pixels])):
        assert sorted(outputs) == ["logits", "probabilities"]
        np.testing.assert_allclose(outputs["probabilities"], tf.nn.softmax(outputs["logits"]).numpy(), atol=1e-6)


def model_server_config_class():
    """TF Serving's ModelServerConfig message, built from the field names and numbers of
    tensorflow_serving/config/model_server_config.proto (tensorflow-serving-api is not installed)."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="model_server_config_subset.proto", package="tensorflow.serving", syntax="proto3"
    )
    model_config = proto.message_type.add(name="ModelConfig")
    for name, number in (("name", 1), ("base_path", 2), ("model_platform", 4)):
        model_config.field.add(name=name, number=number, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    proto.message_type.add(name="ModelConfigList").field.add(
        name="config",
        number=1,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_REPEATED,
        type_name=".tensorflow.serving.ModelConfig",
    )
    proto.message_type.add(name="ModelServerConfig").field.add(
        name="model_config_list",
        number=1,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=".tensorflow.serving.ModelConfigList",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.ModelServerConfig"))


def test_models_config_lists_every_model_with_a_version_and_parses_as_model_server_config(tmp_path):
    for folder in ("detector/1", "classifier/3", "no_versions/notes", ".hidden/1"):
        (tmp_path / folder).mkdir(parents=True)
    path = write_models_config(tmp_path)
    assert path == tmp_path / "models.config"
    config = text_format.Parse(path.read_text(), model_server_config_class()())
    entries = [(c.name, c.base_path, c.model_platform) for c in config.model_config_list.config]
    assert entries == [
        ("classifier", "/models/classifier", "tensorflow"),
        ("detector", "/models/detector", "tensorflow"),
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".models.config")]


def test_models_config_base_path_can_point_at_this_machine(tmp_path):
    export_saved_model(tiny_classifier(), tmp_path, "classifier")
    base = str(tmp_path.resolve())
    config = text_format.Parse(write_models_config(tmp_path, base_path=base).read_text(), model_server_config_class()())
    assert [c.base_path for c in config.model_config_list.config] == [f"{base}/classifier"]
