"""RevCol's official intermediate supervision: the training model's heads, its reconstruction loss,
and a shapes fit that trains the wrapped classifier and every extra head."""

import math

import numpy as np
import pytest

from vision_core.backbones.revcol import RevColConfig, revcol
from vision_core.backbones.revcol_supervision import (reconstruction_loss, supervised_columns, supervised_model,
                                                      supervision_losses, supervision_targets)
from vision_core.backbones.shapes_training import fit_shapes_classifier
from vision_core.backend import keras

TINY = RevColConfig((8, 16, 16, 16), (1, 1, 1, 1), 4)


def tiny_classifier(config=TINY):
    keras.utils.set_random_seed(0)
    return revcol((32, 32, 3), config, "revcol_tiny", 4, layer_scale_init=1.0)


def test_the_training_model_adds_three_column_classifiers_and_three_image_decoders_around_the_classifier():
    classifier = tiny_classifier()
    model = supervised_model(classifier, TINY)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    outputs = model(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 4)] * 4 + [(2, 32, 32, 3)] * 3
    np.testing.assert_allclose(outputs[3], classifier(x), atol=1e-6)
    own = {v.path for v in classifier.weights}
    extra = sorted({v.path.split("/")[0] for v in model.weights if v.path not in own})
    assert extra[:3] == ["column0_decoder_block1_dwconv", "column0_decoder_block1_layer_scale",
                         "column0_decoder_block1_norm"]
    assert {"column0_predictions", "column1_predictions", "column2_predictions", "column2_decoder_projback"} <= \
        set(extra)
    losses, weights = supervision_losses()
    assert weights == [0.175, 0.35, 0.525, 1.0, 3.0, 2.0, 1.0] and len(losses) == 7
    targets = supervision_targets(x, np.array([1, 2]))
    assert [t.shape for t in targets] == [(2,)] * 4 + [(2, 32, 32, 3)] * 3


def test_one_column_in_every_quarter_is_supervised_and_other_column_counts_are_refused():
    assert supervised_columns(RevColConfig(TINY.channels, TINY.blocks, 8)) == [1, 3, 5]
    assert supervised_columns(RevColConfig(TINY.channels, TINY.blocks, 16)) == [3, 7, 11]
    config = RevColConfig(TINY.channels, TINY.blocks, 8)
    names = {layer.name for layer in supervised_model(tiny_classifier(config), config).layers}
    assert {"column1_predictions", "column3_predictions", "column5_predictions", "column5_decoder_image"} <= names
    assert "column0_predictions" not in names and "column7_predictions" not in names
    config = RevColConfig(TINY.channels, TINY.blocks, 6)
    with pytest.raises(ValueError, match="revcol_tiny: .* multiple of 4 columns, not 6"):
        supervised_model(tiny_classifier(config), config)


def test_reconstruction_is_binary_cross_entropy_against_the_image_clamped_to_0_01_0_99():
    image = np.array([[-1.0, 1.0], [0.0, 1.0]], np.float32).reshape(1, 2, 2, 1)
    at_half = float(reconstruction_loss(image, np.zeros_like(image)))
    assert at_half == pytest.approx(math.log(2), rel=1e-6)
    # the best logits give the targets' own entropy: 0.01 and 0.99 for -1 and 1, 0.5 for 0
    target = np.clip((image + 1) / 2, 0.01, 0.99)
    best = float(reconstruction_loss(image, np.log(target / (1 - target))))
    entropy = -(target * np.log(target) + (1 - target) * np.log(1 - target)).mean()
    assert best == pytest.approx(entropy, rel=1e-5) and best < 0.3


class _WeightsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = {v.path: np.array(v) for v in self.model.weights}


def test_a_supervised_fit_trains_the_classifier_and_every_extra_head(monkeypatch):
    classifier = tiny_classifier()
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (64, 32, 32, 3)).astype(np.float32)
    labels = np.arange(64) % 4
    start = _WeightsAtStart()
    fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, **kw: fit(self, *a, **{**kw, "callbacks": [start]}))
    history = fit_shapes_classifier(classifier, x, labels, epochs=1, learning_rate=1e-3, batch_size=16,
                                    supervision=TINY)
    assert len(history.history["predictions_accuracy"]) == 1
    assert int(history.model.optimizer.iterations) == 4
    trained = {v.path: np.array(v) for v in history.model.weights}
    assert {v.path for v in classifier.weights} < set(trained) == set(start.weights)
    for path in ("predictions/kernel", "column0_level0_block0_pwconv1/kernel", "column0_predictions/kernel",
                 "column2_decoder_projback/kernel"):
        assert not np.allclose(trained[path], start.weights[path]), path
    np.testing.assert_array_equal(np.array(classifier.get_layer("predictions").kernel), trained["predictions/kernel"])
