"""The shapes-classifier recipe shared by the backbone demo, its CLI and the int8 benchmark."""

import numpy as np
import pytest

from vision_core.backbones.shapes_training import fit_shapes_classifier, shapes_recipe
from vision_core.backend import keras


def _tiny_bn_classifier():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.999, name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))


def test_batch_norms_train_at_the_recipe_momentum_and_the_rate_decays_to_zero_by_the_last_step():
    model = _tiny_bn_classifier()
    x = np.random.default_rng(0).uniform(-1, 1, (320, 16, 16, 3)).astype(np.float32)
    labels = np.arange(320) % 4
    history = fit_shapes_classifier(model, x, labels, epochs=2, learning_rate=2e-3)
    assert model.get_layer("bn").momentum == 0.9
    assert int(model.optimizer.iterations) == 20 and len(history.history["accuracy"]) == 2
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)


def test_recipe_gives_bottleneck_resnets_longer_training_and_explicit_values_win():
    assert shapes_recipe("resnet18", 2e-3) == (3, 2e-3)
    assert shapes_recipe("resnet50", 2e-3) == (6, 1e-3)
    assert shapes_recipe("resnet101", 2e-3) == (10, 1e-3)
    assert shapes_recipe("resnet50", 2e-3, epochs=2) == (2, 1e-3)
    assert shapes_recipe("resnet50", 2e-3, learning_rate=5e-4) == (6, 5e-4)
    assert shapes_recipe("resnet18", 2e-3, epochs=4, learning_rate=5e-4) == (4, 5e-4)
