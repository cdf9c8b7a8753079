"""Tiny Keras models for the TFLite export, metadata and edge-kit tests: seconds to train and convert."""

from __future__ import annotations

import numpy as np

from tflite.metadata import ModelInfo
from vision_core.backend import keras
from vision_core.data.synthetic import SHAPE_CLASSES, classification_set, normalize

SIZE = 32
LABELS = list(SHAPE_CLASSES)
# conv 3x3/2 (3->8) + depthwise 3x3 (8) + conv 1x1 (8->16) at 16x16, then dense 16->4.
TINY_CLASSIFIER_MACS = 16 * 16 * 8 * 3 * 3 * 3 + 16 * 16 * 8 * 3 * 3 + 16 * 16 * 16 * 8 + 16 * 4


def shapes(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 RGB images [count, SIZE, SIZE, 3], labels [count])`` of one-shape scenes."""
    return classification_set(count, SIZE, seed=seed)


def calibration(count: int = 32, seed: int = 100) -> list[np.ndarray]:
    """Normalised float32 batches of 8 (pixels / 127.5 - 1) for int8 calibration."""
    images = normalize(shapes(count, seed)[0])
    return [images[i : i + 8] for i in range(0, count, 8)]


def tiny_classifier(train_steps: int = 0, seed: int = 0):
    """A 4-class shapes classifier ending in logits (no BN, so its MACs are exact), optionally trained."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="pw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(len(LABELS), name="logits")(x), name="tiny_classifier")
    if train_steps:
        images, labels = shapes(64, seed=seed + 1)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            jit_compile=False,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        for _ in range(train_steps):
            model.train_on_batch(normalize(images), labels)
    return model


def tiny_bn_classifier(seed: int = 0):
    """A 4-class shapes classifier (logits) with a batch norm TF-MOT folds into its conv (``stem_bn``)
    and one it does not (``post_bn``, after the ReLU)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="post_bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(len(LABELS), name="logits")(x), name="tiny_bn_classifier")


def classifier_info(**overrides) -> ModelInfo:
    return ModelInfo(**{"task": "classification", "name": "tiny_classifier", "labels": LABELS, **overrides})


def tiny_segmenter(num_classes: int = 3, seed: int = 0):
    """Per-pixel logits ``masks [1, SIZE/2, SIZE/2, num_classes]`` from two convolutions."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1, name="masks")(x), name="tiny_segmenter")


# What constant_detector returns, in the TFLite_Detection_PostProcess layout: boxes are
# [ymin, xmin, ymax, xmax] relative to the image; the third slot is padding past the count.
DETECTOR_BOXES = [[0.1, 0.2, 0.5, 0.6], [0.5, 0.25, 1.0, 0.75], [0.0, 0.0, 0.0, 0.0]]
DETECTOR_CLASSES = [1.0, 3.0, 0.0]
DETECTOR_SCORES = [0.9, 0.6, 0.0]
DETECTOR_COUNT = 2.0


def constant_detector():
    """A float model with the four detection outputs ``boxes``, ``classes``, ``scores``,
    ``num_detections`` (shapes ``[1, 3, 4]``, ``[1, 3]``, ``[1, 3]``, ``[1]``) holding the
    constants above whatever the image: zero-kernel dense layers whose biases are the values.
    """
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(inputs)
    outputs = {}
    for name, values in (
        ("boxes", DETECTOR_BOXES),
        ("classes", DETECTOR_CLASSES),
        ("scores", DETECTOR_SCORES),
        ("num_detections", [DETECTOR_COUNT]),
    ):
        values = np.asarray(values, np.float32)
        dense = keras.layers.Dense(values.size, name=f"{name}_constant")
        flat = dense(pooled)
        dense.set_weights([np.zeros((3, values.size), np.float32), values.reshape(-1)])
        outputs[name] = keras.layers.Reshape(values.shape, name=name)(flat)
    outputs["num_detections"] = keras.ops.squeeze(outputs["num_detections"], axis=-1)  # [1], as the op gives
    return keras.Model(inputs, outputs, name="constant_detector")
