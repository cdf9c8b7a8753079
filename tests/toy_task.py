"""The toy task the app-framework tests drive (a test helper, not a test file).

``ToyTask`` is a 2-class classifier of 16x16 grey images: class 1 images are brighter
(mean 0.7 vs 0.3, uniform noise +-0.25; pixel ``p`` of an exported uint8 input is ``p / 255``).
Test files import it, and subprocess tests run it as ``python -m toy_task`` (with ``tests/``
on ``PYTHONPATH``); the QAT child builds it with :func:`build_toy`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys

import numpy as np

from vision_core.app.config import QATConfig, TrainConfig, setting
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
    train: TrainConfig = setting(
        factory=lambda: TrainConfig(
            epochs=3, batch_size=16, learning_rate=0.05, warmup_epochs=0.0, mixed_precision="off", strategy="default"
        )
    )
    qat: QATConfig = setting(
        factory=lambda: QATConfig(steps=3, fine_tune_batch=8, fine_tune_images=16, calibration_images=16)
    )


def images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(float32 [count, 16, 16, 1] in [0.05, 0.95], int32 labels)``; label 1 is brighter."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count).astype(np.int32)
    base = np.where(labels == 1, 0.7, 0.3).astype(np.float32)[:, None, None, None]
    return base + rng.uniform(-0.25, 0.25, (count, SIZE, SIZE, 1)).astype(np.float32), labels


def build_toy(width: int, dropout: float = 0.0):
    """The toy classifier: conv, global pool, dropout, 2 logits."""
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    x = keras.layers.Conv2D(width, 3, strides=2, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(2, name="logits")(x)
    return keras.Model(inputs, outputs, name="toy")


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
        return build_toy(config.width, config.dropout)

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
        if isinstance(model, (str, os.PathLike)):  # an exported file: its only output (probabilities)
            from tflite.runtime import TFLiteModel
            from vision_core.export.onnx_export import ONNXModel

            runner = TFLiteModel(model) if str(model).endswith(".tflite") else ONNXModel(model)
            logits = next(iter(runner(x).values()))
        else:
            logits = np.asarray(model(x, training=False))
        return {"accuracy": float(np.mean(logits.argmax(-1) == y)), "samples": len(y)}

    def callbacks(self, config, run_dir):
        kill = os.environ.get("TOY_KILL_AT")
        return [KillAt(*map(int, kill.split(",")))] if kill else []

    def model_info(self, config, name):
        from tflite.metadata import ModelInfo

        return ModelInfo("classification", name, ["dark", "bright"], mean=[0.0], std=[255.0])

    def qat_builder(self, config):
        return "toy_task:build_toy", {"width": config.width, "dropout": config.dropout}

    def qat_loss(self, config):
        return "sparse_categorical_crossentropy_from_logits", {}


if __name__ == "__main__":
    from vision_core.app.cli import main

    raise SystemExit(main(ToyTask(), sys.argv[1:]))
