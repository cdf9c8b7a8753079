"""Detectors of the detect app: SSD, SSDLite and RetinaNet on any registered backbone.

:func:`build_detector` builds one flat functional Keras model (backbone, neck and head
layers side by side) from the fields of :class:`apps.detect.config.ModelConfig` —
keyword arguments, so the QAT job rebuilds it from JSON in the tf_keras flavour::

    model = build_detector(num_classes=6, architecture="retinanet", backbone="resnet50", neck="rcnet")

Input: ``(B, S, S, 3)`` float32 images scaled to ``[-1, 1]`` (``x / 127.5 - 1``). Outputs, by name:

* ``box_encodings`` float32 ``[B, A, 4]``: ``(ty, tx, th, tw)`` against :func:`detector_anchors`
  (xyxy pixels), scaled by :data:`vision_core.detection.boxes.BOX_SCALES`;
* ``class_logits`` float32 ``[B, A, C]``: what the loss sees;
* ``class_scores`` float32 ``[B, A, C]``: probabilities — ``sigmoid`` (RetinaNet, ``C = K``)
  or ``softmax`` (SSD, ``C = K + 1``, column 0 background) — what the post-process takes.

``A`` anchors are ordered as :mod:`vision_core.detection.anchors` describes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from apps.detect.config import ModelConfig
from apps.detect.models import retinanet as retinanet_module
from apps.detect.models import ssd as ssd_module
from vision_core.backbones import build_backbone
from vision_core.backend import keras
from vision_core.detection.anchors import RetinaNetAnchors, SSDDefaultBoxes
from vision_core.layers.normalization import set_batch_norm_momentum

ARCHITECTURES = ("ssd", "ssdlite", "retinanet")


def model_config(config: ModelConfig | dict) -> ModelConfig:
    """``config`` as a :class:`ModelConfig` (a dict of its fields is accepted, lists as tuples)."""
    if isinstance(config, ModelConfig):
        return config
    return ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def uses_softmax(config: ModelConfig | dict) -> bool:
    """SSD heads score with softmax over ``K + 1`` columns (column 0 background); RetinaNet with sigmoid."""
    return model_config(config).architecture in ("ssd", "ssdlite")


def anchor_generator(config: ModelConfig | dict) -> RetinaNetAnchors | SSDDefaultBoxes:
    """The anchor (default box) configuration of a detector."""
    config = model_config(config)
    if uses_softmax(config):
        return SSDDefaultBoxes(
            strides=ssd_module.strides(config.ssd_first_level, config.ssd_layers),
            min_scale=config.ssd_min_scale,
            max_scale=config.ssd_max_scale,
            aspect_ratios=config.ssd_aspect_ratios,
            reduce_boxes_in_lowest_layer=config.ssd_reduce_lowest_layer,
        )
    strides = tuple(2**level for level in config.levels)
    return RetinaNetAnchors(
        strides=strides,
        sizes=tuple(config.anchor_size * s for s in strides),
        scales=tuple(2 ** (i / config.scales_per_octave) for i in range(config.scales_per_octave)),
        aspect_ratios=config.aspect_ratios,
    )


def detector_anchors(config: ModelConfig | dict) -> np.ndarray:
    """The detector's anchors: xyxy pixels ``[A, 4]`` float32 of its ``input_size`` square input."""
    config = model_config(config)
    return anchor_generator(config)((config.input_size, config.input_size))


def backbone_spec(config: ModelConfig | dict) -> tuple[str, tuple[int, int, int], dict]:
    """``(name, input shape, options)`` of the registered backbone :func:`build_detector` builds on."""
    config = model_config(config)
    return config.backbone_spec((config.input_size, config.input_size, 3))


def build_detector(num_classes: int, **fields):
    """The detector of :class:`ModelConfig` ``fields`` for ``num_classes`` classes (see the module docstring)."""
    config = model_config(fields)
    if config.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    name, shape, options = backbone_spec(config)
    backbone = build_backbone(name, shape, **options)
    generator = anchor_generator(config)
    per_location = generator.boxes_per_location
    if uses_softmax(config):
        boxes, logits = ssd_module.ssd(
            backbone,
            num_classes,
            per_location,
            first_level=config.ssd_first_level,
            num_layers=config.ssd_layers,
            separable=config.architecture == "ssdlite",
        )
        scores = keras.layers.Softmax(axis=-1, name="class_scores")(logits)
    else:
        boxes, logits = retinanet_module.retinanet(
            backbone,
            num_classes,
            per_location[0],
            neck=config.neck,
            neck_channels=config.neck_channels,
            levels=config.levels,
            head_depth=config.head_depth,
            head_channels=config.head_channels,
            head_norm=config.head_norm,
        )
        scores = keras.layers.Activation("sigmoid", name="class_scores")(logits)
    expected = len(detector_anchors(config))
    if boxes.shape[1] != expected:
        raise AssertionError(f"head emits {boxes.shape[1]} boxes, anchors number {expected}")
    name = f"{config.architecture}_{config.backbone}" + (f"_{config.neck}" if not uses_softmax(config) else "")
    model = keras.Model(
        backbone.input, {"box_encodings": boxes, "class_logits": logits, "class_scores": scores}, name=name
    )
    if config.bn_momentum is not None:
        set_batch_norm_momentum(model, config.bn_momentum)
    return model


def describe(config: ModelConfig | dict) -> dict:
    """The JSON-friendly fields of ``config`` (what :func:`build_detector` takes)."""
    return dataclasses.asdict(model_config(config))
