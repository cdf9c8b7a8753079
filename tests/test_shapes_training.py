"""The shapes-classifier recipe shared by the backbone demo, its CLI and the int8 benchmark: training,
per-epoch resume and the kept float weights."""

import re

import numpy as np
import pytest

from vision_core.backbones import int8_check
from vision_core.backbones.int8_check import float_training_state_path, float_weights_path, train_classifier
from vision_core.backbones.shapes_training import fit_shapes_classifier, shapes_recipe, warmup_cosine
from vision_core.backend import keras
from vision_core.weights import save_npz, weights_by_path


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


def test_the_schedule_warms_up_linearly_over_a_tenth_of_the_steps_then_decays_to_zero():
    schedule = warmup_cosine(1000, 3e-4)
    rates = [float(schedule(step)) for step in (0, 50, 100, 550, 1000)]
    assert rates == pytest.approx([0.0, 1.5e-4, 3e-4, 1.5e-4, 0.0], abs=1e-9)


def test_recipe_gives_bottleneck_resnets_and_mobilenet_v2_longer_training_and_explicit_values_win():
    assert shapes_recipe("resnet18", 2e-3) == (3, 2e-3)
    assert shapes_recipe("resnet50", 2e-3) == (6, 1e-3)
    assert shapes_recipe("resnet101", 2e-3) == (10, 1e-3)
    assert shapes_recipe("mobilenet_v2", 2e-3) == (6, 2e-3)
    assert shapes_recipe("resnet50", 2e-3, epochs=2) == (2, 1e-3)
    assert shapes_recipe("resnet50", 2e-3, learning_rate=5e-4) == (6, 5e-4)
    assert shapes_recipe("resnet18", 2e-3, epochs=4, learning_rate=5e-4) == (4, 5e-4)


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    """Keeps the weights at the end of epoch 1, then interrupts the fit like a kill would."""

    def on_epoch_end(self, epoch, logs=None):
        self.weights = [np.array(v) for v in self.model.trainable_variables]
        raise KeyboardInterrupt


class _StartOfFit(keras.callbacks.Callback):
    """Keeps the weights and optimizer step the fit starts from."""

    def on_train_begin(self, logs=None):
        self.weights = [np.array(v) for v in self.model.trainable_variables]
        self.iterations = int(self.model.optimizer.iterations)


def _add_callback(monkeypatch, callback):
    fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit",
                        lambda self, *a, **kw: fit(self, *a, **{**kw, "callbacks": [*kw["callbacks"], callback]}))


def test_a_fit_killed_after_an_epoch_resumes_from_its_checkpoint_at_the_next_epoch(tmp_path, monkeypatch):
    x = np.random.default_rng(0).uniform(-1, 1, (320, 16, 16, 3)).astype(np.float32)
    labels = np.arange(320) % 4
    checkpoint = tmp_path / "state.npz"
    stop = _StopAfterFirstEpoch()
    _add_callback(monkeypatch, stop)
    with pytest.raises(KeyboardInterrupt):
        fit_shapes_classifier(_tiny_bn_classifier(), x, labels, epochs=3, learning_rate=2e-3, checkpoint=checkpoint)
    monkeypatch.undo()

    start = _StartOfFit()
    _add_callback(monkeypatch, start)
    resumed = _tiny_bn_classifier()
    history = fit_shapes_classifier(resumed, x, labels, epochs=3, learning_rate=2e-3, checkpoint=checkpoint)
    assert start.iterations == 10
    for got, expected in zip(start.weights, stop.weights, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert history.epoch == [1, 2]
    assert int(resumed.optimizer.iterations) == 30
    assert float(resumed.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)


def test_the_trained_float_classifier_is_kept_on_disk_and_a_second_call_loads_it_without_training(
        tmp_path, monkeypatch):
    weights_file = float_weights_path(tmp_path, "resnet18", 32, 64, 1, 1e-3)
    assert weights_file.name == "resnet18_32px_64images_1epochs_lr0.001_seed7.npz"
    trained, x, labels = train_classifier("resnet18", 32, 64, 1, 1e-3, weights_file=weights_file)
    assert weights_file.is_file() and not float_training_state_path(weights_file).exists()

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the weights file exists")

    monkeypatch.setattr(int8_check, "fit_shapes_classifier", no_training)
    reused, x_again, labels_again = train_classifier("resnet18", 32, 64, 1, 1e-3, weights_file=weights_file)
    np.testing.assert_array_equal(x_again, x)
    np.testing.assert_array_equal(labels_again, labels)
    expected = weights_by_path(trained)
    got = weights_by_path(reused)
    assert got.keys() == expected.keys()
    for path, value in expected.items():
        np.testing.assert_array_equal(got[path], value, err_msg=path)


def test_kept_weights_of_another_architecture_are_refused_naming_the_file(tmp_path):
    weights_file = float_weights_path(tmp_path, "resnet18", 32, 64, 1, 1e-3)
    save_npz({"conv1_conv/kernel": np.zeros((3, 3, 3, 8), np.float32)}, weights_file)
    expected = re.escape(f"{weights_file}: not this backbone's weights (") + ".*missing in weights"
    with pytest.raises(ValueError, match=expected):
        train_classifier("resnet18", 32, 64, 1, 1e-3, weights_file=weights_file)
