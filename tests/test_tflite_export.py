"""TFLite export with metadata: int8 with uint8 input that normalises, probabilities, Keras agreement."""

import numpy as np
import pytest
from conftest import last_json_line, run_python
from tiny_models import SIZE, calibration, classifier_info, shapes, tiny_classifier

from tflite.audit import require_int8
from tflite.metadata import read_metadata
from tflite.predict import Predictor
from tflite.runtime import TFLiteModel
from vision_core.backend import keras
from vision_core.data.synthetic import normalize
from vision_core.export.tflite_export import ends_in_probabilities, ends_in_sigmoid, ends_in_softmax, export_tflite


@pytest.fixture(scope="module")
def classifier():
    return tiny_classifier(train_steps=100)


@pytest.fixture(scope="module")
def int8_path(classifier, tmp_path_factory):
    return export_tflite(
        classifier,
        tmp_path_factory.mktemp("export") / "tiny_int8.tflite",
        "int8",
        calibration(),
        info=classifier_info(),
    )


@pytest.fixture(scope="module")
def probe():
    """Training images (the tiny model is confident on them) and Keras probabilities."""
    return shapes(64, seed=1)[0][:16]


def _keras_probabilities(classifier, images):
    return np.asarray(keras.ops.softmax(classifier(normalize(images), training=False)))


def _tflite_probabilities(path, images):
    predictor = Predictor(path)
    return np.array(
        [[d["score"] for d in sorted(predictor(image).labels, key=lambda d: d["index"])] for image in images]
    )


def test_int8_export_is_all_int8_with_uint8_input_and_output(int8_path):
    records = require_int8(str(int8_path))
    model = TFLiteModel(int8_path)
    assert model.input_dtype == np.uint8
    assert model.outputs["probabilities"]["dtype"] == np.uint8
    assert records[-2].op == "SOFTMAX" and records[-2].output_dtypes == ("int8",)


def test_uint8_input_quantization_maps_pixels_to_the_normalised_input(int8_path):
    scale, zero_point = TFLiteModel(int8_path).inputs["image"]["quantization"]
    assert scale == pytest.approx(1 / 127.5, rel=1e-6)
    assert zero_point in (127, 128)


def test_export_carries_the_metadata(int8_path):
    info = read_metadata(int8_path)
    assert info == classifier_info(input_size=(SIZE, SIZE), outputs={"probabilities": "probabilities"}, macs=info.macs)


def test_int8_probabilities_sum_to_one(int8_path, probe):
    probabilities = _tflite_probabilities(int8_path, probe)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=4 / 256)


def test_int8_top_class_agrees_with_keras(classifier, int8_path, probe):
    reference = _keras_probabilities(classifier, probe)
    probabilities = _tflite_probabilities(int8_path, probe)
    ranked = np.sort(reference, axis=1)
    clear = ranked[:, -1] - ranked[:, -2] > 0.1  # int8 may swap near-ties only
    assert clear.sum() >= 8
    np.testing.assert_array_equal(probabilities.argmax(1)[clear], reference.argmax(1)[clear])
    assert (probabilities.argmax(1) == reference.argmax(1)).mean() >= 0.85
    assert np.abs(probabilities - reference).max() < 0.1


def test_float32_export_takes_normalised_float_input_and_matches_keras(classifier, probe, tmp_path):
    path = export_tflite(classifier, tmp_path / "tiny_float.tflite", "float32", info=classifier_info())
    assert TFLiteModel(path).input_dtype == np.float32
    np.testing.assert_allclose(_tflite_probabilities(path, probe), _keras_probabilities(classifier, probe), atol=1e-5)


def test_uint8_input_with_per_channel_normalisation_is_refused(classifier, tmp_path):
    info = classifier_info(mean=[123.7, 116.3, 103.5], std=[58.4, 57.1, 57.4])
    with pytest.raises(ValueError, match="one mean/std for all channels"):
        export_tflite(classifier, tmp_path / "x.tflite", "int8", calibration(), info=info)
    assert not (tmp_path / "x.tflite").exists()


def test_calibration_data_normalised_otherwise_fail_the_uint8_check(classifier, tmp_path):
    with pytest.raises(ValueError, match="does not normalise pixels"):
        export_tflite(
            classifier, tmp_path / "x.tflite", "int8", calibration(), info=classifier_info(mean=[0.0], std=[255.0])
        )
    assert not (tmp_path / "x.tflite").exists()


def test_only_models_ending_in_logits_get_a_softmax(classifier):
    inputs = keras.Input((4,), name="features")
    assert ends_in_softmax(keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="p")(inputs)))
    assert ends_in_softmax(keras.Model(inputs, keras.layers.Softmax(name="p")(inputs)))
    assert not ends_in_softmax(classifier)


def test_a_classifier_ending_in_a_sigmoid_exports_its_own_probabilities(classifier, tmp_path):
    sigmoid = keras.layers.Activation("sigmoid", name="probabilities")(classifier.outputs[0])
    multi_label = keras.Model(classifier.inputs, sigmoid, name="multi_label")
    assert ends_in_sigmoid(multi_label) and not ends_in_sigmoid(classifier)
    path = export_tflite(multi_label, tmp_path / "m.tflite", "float32", info=classifier_info())
    images = calibration(2)[0]
    outputs = TFLiteModel(path.read_bytes())(images)
    np.testing.assert_allclose(outputs["probabilities"], multi_label(images).numpy(), atol=1e-5)


def test_a_classifier_ending_in_a_layer_named_probabilities_is_exported_as_it_is(classifier, tmp_path):
    probabilities = keras.layers.Softmax(name="member_probabilities")(classifier.outputs[0])
    mean = keras.layers.Average(name="probabilities")([probabilities, probabilities])
    averaged = keras.Model(classifier.inputs, mean, name="averaged")
    assert ends_in_probabilities(averaged) and not ends_in_probabilities(classifier)
    path = export_tflite(averaged, tmp_path / "m.tflite", "float32", info=classifier_info())
    images = calibration(2)[0]
    np.testing.assert_allclose(TFLiteModel(path.read_bytes())(images)["probabilities"], averaged(images), atol=1e-5)


@pytest.mark.slow
def test_softmax_is_recognised_through_tf_mot_quantize_wrappers():
    code = """
import json
from vision_core.backend import keras, tfmot
from vision_core.export.tflite_export import ends_in_softmax
inputs = keras.Input((8, 8, 3), name="image")
x = keras.layers.GlobalAveragePooling2D(name="pool")(keras.layers.Conv2D(4, 3, name="conv")(inputs))
heads = {"dense_softmax": keras.layers.Dense(3, activation="softmax", name="p")(x),
         "softmax_layer": keras.layers.Softmax(name="s")(keras.layers.Dense(3, name="d")(x)),
         "logits": keras.layers.Dense(3, name="l")(x)}
quantize = tfmot().quantization.keras.quantize_model
print(json.dumps({k: ends_in_softmax(quantize(keras.Model(inputs, v))) for k, v in heads.items()}))
"""
    result = run_python(code, flavour="tf_keras")
    assert result.returncode == 0, result.stderr[-3000:]
    assert last_json_line(result.stdout) == {"dense_softmax": True, "softmax_layer": True, "logits": False}
