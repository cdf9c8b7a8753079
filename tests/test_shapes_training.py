"""The shapes-classifier recipe shared by the backbone demo, its CLI and the int8 benchmark: training,
per-epoch resume and the kept float weights."""

import re
from pathlib import Path

import numpy as np
import pytest

from vision_core.backbones import int8_check
from vision_core.backbones.int8_check import float_training_state_path, float_weights_path, train_classifier
from vision_core.backbones.registry import build_backbone
from vision_core.backbones.shapes_training import (fit_shapes_classifier, shapes_cycles, shapes_recipe, shapes_setup,
                                                   warmup_cosine)
from vision_core.backend import keras
from vision_core.weights import load_npz, save_npz, weights_by_path


def _tiny_bn_classifier(name="tiny"):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.999, name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x), name=name)


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
    assert shapes_recipe("revcol_t", 2e-3) == shapes_recipe("revcol_s", 2e-3) == shapes_recipe("revcol_b", 2e-3) \
        == (3, 1e-4)


def test_the_schedule_runs_once_unless_the_recipe_or_the_caller_says_more():
    assert shapes_cycles("resnet18") == 1
    assert shapes_cycles("resnet18", 2) == 2
    assert (shapes_cycles("revcol_t"), shapes_cycles("revcol_s"), shapes_cycles("revcol_s", 1)) == (1, 2, 1)
    assert (shapes_cycles("vovnet57"), shapes_cycles("vovnet39")) == (2, 1)


def test_revcol_t_trains_its_first_column_alone_first_with_layer_scales_starting_at_one():
    assert shapes_setup("resnet50", (32, 32, 3), 4) == ({}, None)
    options, (build_first, epochs, learning_rate) = shapes_setup("revcol_t", (32, 32, 3), 4)
    assert options == {"layer_scale_init": 1.0} and (epochs, learning_rate) == (6, 3e-4)
    first = build_first()
    full = build_backbone("revcol_t", (32, 32, 3), num_classes=4, **options)
    first_paths, full_paths = set(weights_by_path(first)), set(weights_by_path(full))
    assert first_paths < full_paths
    assert {p.split("/")[0].split("_")[0] for p in first_paths} == {"stem", "column0", "head", "predictions"}
    assert {p.split("/")[0].split("_")[0] for p in full_paths - first_paths} == {"column1", "column2", "column3"}
    assert float(full.get_layer("column0_level0_block0_layer_scale").gamma[0]) == 1.0


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
    trained, x, labels = train_classifier("resnet18", 32, 64, 1, 1e-3, float_weights=tmp_path)
    assert weights_file.is_file() and not float_training_state_path(weights_file).exists()

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the weights file exists")

    monkeypatch.setattr(int8_check, "fit_shapes_classifier", no_training)
    reused, x_again, labels_again = train_classifier("resnet18", 32, 64, 1, 1e-3, float_weights=tmp_path)
    np.testing.assert_array_equal(x_again, x)
    np.testing.assert_array_equal(labels_again, labels)
    expected = weights_by_path(trained)
    got = weights_by_path(reused)
    assert got.keys() == expected.keys()
    for path, value in expected.items():
        np.testing.assert_array_equal(got[path], value, err_msg=path)


def test_each_cycle_starts_from_the_one_before_keeps_its_weights_and_only_the_first_takes_the_warm_start(
        tmp_path, monkeypatch):
    calls = []

    def stand_in_fit(model, *args, checkpoint, warm_start=None, **kwargs):
        """Records the weights it starts from, moves every weight by 1 and leaves an epoch's state."""
        calls.append((weights_by_path(model), warm_start))
        for variable in model.weights:
            variable.assign(np.asarray(variable) + 1.0)
        Path(checkpoint).write_bytes(b"state")

    # a stand-in warm start: the call records it, the stand-in fit does not run it (the real fit's
    # training and resume are tested above)
    monkeypatch.setattr(int8_check, "shapes_setup", lambda *args: ({}, "first column alone"))
    monkeypatch.setattr(int8_check, "fit_shapes_classifier", stand_in_fit)
    trained, _, _ = train_classifier("resnet18", 32, 64, 1, 1e-3, float_weights=tmp_path, cycles=2)
    first_file = float_weights_path(tmp_path, "resnet18", 32, 64, 1, 1e-3)
    second_file = float_weights_path(tmp_path, "resnet18", 32, 64, 1, 1e-3, cycles=2)
    assert second_file.name == "resnet18_32px_64images_1epochsx2_lr0.001_seed7.npz"
    assert [warm_start for _, warm_start in calls] == ["first column alone", None]
    first_weights = load_npz(first_file)
    for path, value in first_weights.items():
        np.testing.assert_array_equal(calls[1][0][path], value, err_msg=path)
    second_weights = load_npz(second_file)
    for path, value in weights_by_path(trained).items():
        np.testing.assert_array_equal(second_weights[path], value, err_msg=path)
    assert any(not np.array_equal(second_weights[path], value) for path, value in first_weights.items())
    assert not list(tmp_path.glob("*.state.npz"))

    # a third cycle loads the second's weights and trains once, from them
    calls.clear()
    third, _, _ = train_classifier("resnet18", 32, 64, 1, 1e-3, float_weights=tmp_path, cycles=3)
    assert [warm_start for _, warm_start in calls] == [None]
    for path, value in second_weights.items():
        np.testing.assert_array_equal(calls[0][0][path], value, err_msg=path)
    assert float_weights_path(tmp_path, "resnet18", 32, 64, 1, 1e-3, cycles=3).is_file()


def test_kept_weights_of_another_architecture_are_refused_naming_the_file(tmp_path):
    weights_file = float_weights_path(tmp_path, "resnet18", 32, 64, 1, 1e-3)
    save_npz({"conv1_conv/kernel": np.zeros((3, 3, 3, 8), np.float32)}, weights_file)
    expected = re.escape(f"{weights_file}: not this backbone's weights (") + ".*missing in weights"
    with pytest.raises(ValueError, match=expected):
        train_classifier("resnet18", 32, 64, 1, 1e-3, float_weights=tmp_path)


def _tiny_bn_classifier_with_extra_layer():
    """The tiny classifier's layers and one more: the "full" model of a warm start."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.999, name="bn")(x)
    x = keras.layers.Conv2D(4, 1, name="extra")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x), name="full")


class _FitsSeen(keras.callbacks.Callback):
    """Per fitted model (by name): the weights it starts from."""

    def __init__(self):
        super().__init__()
        self.starts = {}

    def on_train_begin(self, logs=None):
        self.starts[self.model.name] = {v.path: np.array(v) for v in self.model.weights}


def test_a_warm_start_trains_first_then_copies_its_weights_in_and_a_resumed_run_skips_it(tmp_path, monkeypatch):
    x = np.random.default_rng(0).uniform(-1, 1, (320, 16, 16, 3)).astype(np.float32)
    labels = np.arange(320) % 4
    checkpoint = tmp_path / "state.npz"
    first, model = _tiny_bn_classifier("first"), _tiny_bn_classifier_with_extra_layer()
    seen = _FitsSeen()
    stop = _StopAfterFirstEpoch()
    _add_callback(monkeypatch, seen)
    fit = keras.Model.fit

    def stop_the_full_model(self, *args, **kwargs):
        callbacks = kwargs["callbacks"] + ([stop] if self.name == "full" else [])
        return fit(self, *args, **{**kwargs, "callbacks": callbacks})

    monkeypatch.setattr(keras.Model, "fit", stop_the_full_model)
    with pytest.raises(KeyboardInterrupt):
        fit_shapes_classifier(model, x, labels, epochs=3, learning_rate=2e-3, checkpoint=checkpoint,
                              warm_start=(lambda: first, 2, 1e-3))
    assert int(first.optimizer.iterations) == 20
    trained_first = weights_by_path(first)
    for path in ("conv/kernel", "bn/moving_mean", "logits/kernel"):
        np.testing.assert_array_equal(seen.starts["full"][path], trained_first[path], err_msg=path)
    assert checkpoint.is_file() and (tmp_path / "state.first.npz").is_file()
    monkeypatch.undo()

    seen = _FitsSeen()
    _add_callback(monkeypatch, seen)
    resumed = _tiny_bn_classifier_with_extra_layer()
    history = fit_shapes_classifier(resumed, x, labels, epochs=3, learning_rate=2e-3, checkpoint=checkpoint,
                                    warm_start=(lambda: _tiny_bn_classifier("first"), 2, 1e-3))
    assert list(seen.starts) == ["full"] and history.epoch == [1, 2]
    for got, expected in zip(
            [seen.starts["full"][v.path] for v in resumed.trainable_variables], stop.weights, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert [p.name for p in tmp_path.iterdir()] == ["state.npz"]
