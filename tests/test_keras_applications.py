"""ResNet-50 (keras variant) and MobileNetV2-1.0 are the same function as keras.applications."""

import numpy as np
import pytest

from vision_core.backbones import build_backbone
from vision_core.backbones.pretrained import (
    imagenet_file_name,
    load_keras_applications_weights,
)
from vision_core.backend import keras

CASES = [
    ("resnet50", {"variant": "keras"}, keras.applications.ResNet50, {}),
    ("mobilenet_v2", {"alpha": 1.0}, keras.applications.MobileNetV2, {"alpha": 1.0}),
]


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    for v in model.weights:
        values = rng.normal(0, 0.05, size=v.shape)
        if "moving_variance" in v.path or "gamma" in v.path:
            values = rng.uniform(0.5, 1.5, size=v.shape)
        v.assign(values.astype("float32"))


@pytest.mark.parametrize("name, options, application, app_options", CASES)
def test_same_function_as_keras_applications(name, options, application, app_options, tmp_path):
    reference = application(weights=None, input_shape=(160, 160, 3), **app_options)
    _randomise(reference)
    weights_file = tmp_path / "reference.weights.h5"
    reference.save_weights(weights_file)
    model = build_backbone(name, (160, 160, 3), num_classes=1000, classifier_activation="softmax", **options)
    load_keras_applications_weights(model, name, weights_file, alpha=app_options.get("alpha", 1.0))
    x = np.random.default_rng(1).uniform(-1, 1, size=(2, 160, 160, 3)).astype("float32")
    assert np.abs(np.asarray(model(x)) - np.asarray(reference(x))).max() < 1e-4
    assert model.count_params() == reference.count_params()


def test_feature_model_loads_the_no_top_weights(tmp_path):
    reference = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(96, 96, 3))
    _randomise(reference)
    reference.save_weights(tmp_path / "notop.weights.h5")
    model = build_backbone("mobilenet_v2", (96, 96, 3))
    load_keras_applications_weights(model, "mobilenet_v2", tmp_path / "notop.weights.h5")
    x = np.random.default_rng(2).uniform(-1, 1, size=(1, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(model(x)["C5"], reference(x), atol=1e-4)


def test_missing_imagenet_file_is_named_and_nothing_is_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    model = build_backbone("resnet50", (224, 224, 3), num_classes=1000, variant="keras")
    expected = tmp_path / "models" / imagenet_file_name("resnet50", include_top=True)
    with pytest.raises(FileNotFoundError, match=str(expected)):
        load_keras_applications_weights(model, "resnet50", "imagenet")
    assert not expected.exists()
