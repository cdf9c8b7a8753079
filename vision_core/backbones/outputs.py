"""The two output forms every backbone offers: named features or a classifier."""

from __future__ import annotations

from vision_core.backbones.registry import FEATURE_NAMES
from vision_core.backend import keras


def feature_model(inputs, features: dict, name: str):
    """A model whose outputs are ``{"C2": ..., "C5": ...}`` (NHWC, strides 4..32)."""
    missing = [k for k in FEATURE_NAMES if k not in features]
    if missing:
        raise ValueError(f"{name}: backbone did not produce features {missing}")
    return keras.Model(inputs, {k: features[k] for k in FEATURE_NAMES}, name=name)


def classifier_model(
    inputs,
    x,
    num_classes: int,
    name: str,
    *,
    dropout: float = 0.0,
    classifier_activation: str | None = None,
    pool: bool = True,
):
    """Global average pool -> dropout -> ``predictions`` dense layer.

    Output: ``(batch, num_classes)`` logits, or probabilities with
    ``classifier_activation="softmax"`` (as keras.applications does).
    """
    if pool:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=name)
