"""The toy task the app-framework tests drive, and the Task contract's defaults.

``ToyTask`` is a 2-class classifier of 16x16 grey images: class 1 images are brighter
(mean 0.7 vs 0.3, uniform noise +-0.25). Other test files import it, and subprocess tests
run it as ``python -m test_app_task`` (with ``tests/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys

import numpy as np
import pytest

from vision_core.app.config import TrainConfig, setting
from vision_core.app.errors import NotSupported
from vision_core.app.task import Task
from vision_core.backend import keras, tf

SIZE = 16


@dataclasses.dataclass
class ToyData:
    """Sizes of the toy data."""

    train_samples: int = setting(64, "training images")
    val_samples: int = setting(32, "validation images")
    data_seed: int = setting(7, "seed of the generated images")


@dataclasses.dataclass
class ToyConfig:
    """The toy task's config: a model section, a data section and the trainer's."""

    width: int = setting(4, "conv filters")
    dropout: float = setting(0.0, "dropout before the classifier")
    data: ToyData = setting(factory=ToyData)
    train: TrainConfig = setting(factory=lambda: TrainConfig(epochs=3, batch_size=16, learning_rate=0.05,
                                                             warmup_epochs=0.0, mixed_precision="off",
                                                             strategy="default"))


def images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(float32 [count, 16, 16, 1] in [0.05, 0.95], int32 labels)``; label 1 is brighter."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count).astype(np.int32)
    base = np.where(labels == 1, 0.7, 0.3).astype(np.float32)[:, None, None, None]
    return base + rng.uniform(-0.25, 0.25, (count, SIZE, SIZE, 1)).astype(np.float32), labels


class KillAt(keras.callbacks.Callback):
    """SIGKILLs this process at (epoch, batch), both 1-based, from ``TOY_KILL_AT=epoch,batch``."""

    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.at, self.epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch + 1) == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


class ToyTask(Task):
    """Bright-vs-dark 16x16 classifier; headline metric ``accuracy``."""

    name = "toy"
    description = "Toy 2-class classifier of 16x16 grey images (tests only)."
    presets = {"small": ToyConfig(), "wide": ToyConfig(width=8)}
    headline_metric = "accuracy"

    def build_model(self, config):
        inputs = keras.Input((SIZE, SIZE, 1), name="image")
        x = keras.layers.Conv2D(config.width, 3, strides=2, activation="relu", name="conv")(inputs)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dropout(config.dropout, name="dropout")(x)
        outputs = keras.layers.Dense(2, name="logits")(x)
        return keras.Model(inputs, outputs, name="toy")

    def datasets(self, config):
        batch = config.train.batch_size
        train = images(config.data.train_samples, config.data.data_seed)
        val = images(config.data.val_samples, config.data.data_seed + 1)
        train_set = tf.data.Dataset.from_tensor_slices(train).shuffle(len(train[1]), reshuffle_each_iteration=True)
        return train_set.batch(batch), tf.data.Dataset.from_tensor_slices(val).batch(batch)

    def compile_args(self, config):
        return {"loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "metrics": ["accuracy"]}

    def evaluate(self, model, config):
        x, y = images(config.data.val_samples, config.data.data_seed + 1)
        logits = np.asarray(model(x, training=False))
        return {"accuracy": float(np.mean(logits.argmax(-1) == y)), "samples": len(y)}

    def callbacks(self, config, run_dir):
        kill = os.environ.get("TOY_KILL_AT")
        return [KillAt(*map(int, kill.split(",")))] if kill else []


def test_toy_task_is_a_task_with_headline_in_its_evaluation():
    task = ToyTask()
    config = task.presets["small"]
    metrics = task.evaluate(task.build_model(config), config)
    assert isinstance(task, Task) and task.headline_metric in metrics and metrics["samples"] == 32


def test_a_task_missing_an_abstract_method_cannot_be_built():
    class Incomplete(Task):
        name = "incomplete"

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


def test_default_predict_and_qat_say_the_task_does_not_support_them(tmp_path):
    task, config = ToyTask(), ToyTask.presets["small"]
    with pytest.raises(NotSupported, match="task 'toy' does not implement predict"):
        task.predict(None, [], config, tmp_path)
    with pytest.raises(NotSupported, match="task 'toy' does not implement qat"):
        task.qat(None, config, tmp_path, 1)


def test_default_check_data_counts_batches_and_samples():
    assert ToyTask().check_data(ToyTask.presets["small"]) == {"train": {"batches": 4, "samples": 64},
                                                            "val": {"batches": 2, "samples": 32}}


def test_default_representative_data_is_float32_val_batches():
    batches = list(ToyTask().representative_data(ToyTask.presets["small"], batches=3))
    assert [b.shape for b in batches] == [(16, SIZE, SIZE, 1), (16, SIZE, SIZE, 1)]
    assert all(b.dtype == np.float32 for b in batches)


def test_default_export_signature_serves_the_model_outputs_by_name():
    task, config = ToyTask(), ToyTask.presets["small"]
    model = task.build_model(config)
    (name, (serve, signature)), = task.export_signatures(model, config).items()
    x = images(2, 0)[0]
    assert name == "serving_default" and signature[0].shape.as_list() == [None, SIZE, SIZE, 1]
    np.testing.assert_allclose(serve(x)["logits"], model(x), rtol=0, atol=0)


if __name__ == "__main__":
    from vision_core.app.cli import main

    raise SystemExit(main(ToyTask(), sys.argv[1:]))
