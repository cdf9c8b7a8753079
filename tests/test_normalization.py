"""The suite's normalization layers: the same function as Keras' in float; the batch norm survives int8."""

import numpy as np
import pytest

from tflite.runtime import TFLiteModel
from vision_core.backend import keras
from vision_core.layers.normalization import LayerNorm, PreNormBatchNorm
from vision_core.quant.agreement import cosine_similarity
from vision_core.quant.convert import convert


def _residual_stream(seed: int, count: int = 8) -> np.ndarray:
    """Tokens whose magnitudes span 100x, like a trained residual stream."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 8, 8, 32)).astype(np.float32)
    magnitude = 10 ** rng.uniform(-2, 0, size=(count, 8, 8, 1)).astype(np.float32)
    return x * magnitude


def _int8_outputs(model, calibration, x) -> np.ndarray:
    tflite = TFLiteModel(convert(model, "int8", calibration))
    return next(iter(tflite(x).values()))


def test_layer_norm_matches_keras_with_epsilon_on_tiny_tokens():
    x = _residual_stream(0) * 1e-2  # token variances near epsilon: epsilon must act as in Keras
    ours, reference = LayerNorm(epsilon=1e-6), keras.layers.LayerNormalization(epsilon=1e-6)
    ours.build(x.shape)
    reference.build(x.shape)
    gamma, beta = np.linspace(0.5, 2, 32, dtype=np.float32), np.linspace(-1, 1, 32, dtype=np.float32)
    for layer in (ours, reference):
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    np.testing.assert_allclose(ours(x), reference(x), atol=2e-5)


def _pre_norm_model(norm):
    """conv -> conv -> residual add -> norm -> conv, the norm scaling by ~1000 as on a trained residual stream."""
    inputs = keras.Input((8, 8, 8), name="image")
    a = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(8, 3, padding="same", name="b")(a)
    x = norm(keras.layers.Add(name="residual")([a, b]))
    model = keras.Model(inputs, keras.layers.Conv2D(8, 1, name="out")(x))
    norm.moving_variance.assign(np.full(8, 1e-6, np.float32))
    norm.moving_mean.assign(np.linspace(-0.1, 0.1, 8, dtype=np.float32))
    return model


def test_pre_norm_batch_norm_is_keras_batch_norm_in_training_and_inference():
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 8)).astype(np.float32)
    ours = PreNormBatchNorm(epsilon=1e-6, momentum=0.9)
    reference = keras.layers.BatchNormalization(epsilon=1e-6, momentum=0.9)
    for layer in (ours, reference):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2, 8, dtype=np.float32))
        layer.beta.assign(np.linspace(-1, 1, 8, dtype=np.float32))
    np.testing.assert_allclose(ours(x, training=True), reference(x, training=True), atol=1e-5)
    np.testing.assert_allclose(ours.moving_mean, reference.moving_mean, atol=1e-6)
    np.testing.assert_allclose(ours.moving_variance, reference.moving_variance, atol=1e-6)
    np.testing.assert_allclose(ours(x), reference(x), atol=1e-5)
    assert [v.path for v in ours.weights] == [v.path.replace(reference.name, ours.name) for v in reference.weights]


@pytest.mark.slow
def test_pre_norm_batch_norm_after_a_residual_add_survives_int8_where_keras_batch_norm_does_not():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    calibration = [rng.normal(size=(8, 8, 8, 8)).astype(np.float32) for _ in range(4)]
    x = rng.normal(size=(8, 8, 8, 8)).astype(np.float32)
    cosines = {}
    for name, norm in (
        ("suite", PreNormBatchNorm(epsilon=1e-6, name="norm")),
        ("keras", keras.layers.BatchNormalization(epsilon=1e-6, name="norm")),
    ):
        keras.utils.set_random_seed(0)
        model = _pre_norm_model(norm)
        cosines[name] = cosine_similarity(np.asarray(model(x)), _int8_outputs(model, calibration, x))
    assert cosines["suite"] >= 0.99
    # The converter quantizes the add with the batch norm's output range (TF 2.21).
    assert cosines["keras"] < 0.5
