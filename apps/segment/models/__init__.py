"""Segmenters of the segment app: the FFNet-style up-head, LR-ASPP and DeepLabv3+ on any registered backbone.

:func:`build_segmenter` builds one flat functional Keras model (backbone and head layers side by
side) from the fields of :class:`apps.segment.config.ModelConfig`: keyword arguments, so the QAT
job rebuilds it from JSON in the tf_keras flavour::

    model = build_segmenter(num_classes=5, architecture="ffnet", backbone="resnet18", input_size=128)

Input: ``(B, S, S, 3)`` float32 images ``(pixels - 127.5) / 127.5``. Output ``logits`` float32
``[B, S, S, K]``: the head's logits at ``output_stride`` 4 or 8, resized bilinearly to the input.
The shipped model (:func:`with_probabilities`) ends in a softmax named ``masks``, what MediaPipe's
ImageSegmenter reads (its metadata's activation: none).
"""

from __future__ import annotations

import dataclasses

from apps.segment.config import ModelConfig
from apps.segment.models.deeplab import deeplabv3plus_head
from apps.segment.models.ffnet import ffnet_up_head
from apps.segment.models.lraspp import lraspp_head
from vision_core.backbones import build_backbone
from vision_core.backend import keras
from vision_core.layers.normalization import set_batch_norm_momentum

ARCHITECTURES = ("ffnet", "lraspp", "deeplabv3plus")


def model_config(config: ModelConfig | dict) -> ModelConfig:
    """``config`` as a :class:`ModelConfig` (a dict of its fields is accepted, lists as tuples)."""
    if isinstance(config, ModelConfig):
        return config
    return ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def backbone_spec(config: ModelConfig | dict) -> tuple[str, tuple[int, int, int], dict]:
    """``(name, input shape, options)`` of the registered backbone :func:`build_segmenter` builds on."""
    config = model_config(config)
    return config.backbone_spec((config.input_size, config.input_size, 3))


def build_segmenter(num_classes: int, **fields):
    """The segmenter of :class:`ModelConfig` ``fields`` for ``num_classes`` classes (see the module docstring)."""
    config = model_config(fields)
    if config.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    if config.output_stride not in (4, 8):
        raise ValueError(f"output_stride must be 4 or 8, got {config.output_stride}")
    name, shape, options = backbone_spec(config)
    backbone = build_backbone(name, shape, **options)
    features = backbone.output
    common = {"output_stride": config.output_stride, "upsample": config.upsample}
    if config.architecture == "ffnet":
        logits = ffnet_up_head(features, num_classes, config.ffnet_head, width=config.head_width, **common)
    elif config.architecture == "lraspp":
        logits = lraspp_head(features, num_classes, channels=config.lraspp_channels, **common)
    else:
        logits = deeplabv3plus_head(
            features, num_classes, channels=config.aspp_channels, rates=tuple(config.aspp_rates), **common
        )
    size = config.input_size
    logits = keras.layers.Resizing(size, size, interpolation="bilinear", name="logits")(logits)
    model = keras.Model(backbone.input, logits, name=f"{config.architecture}_{config.backbone}")
    if config.bn_momentum is not None:
        set_batch_norm_momentum(model, config.bn_momentum)
    return model


def with_probabilities(model):
    """``model`` (logits ``[B, S, S, K]``) ending in a softmax over classes, output ``masks``: the shipped form."""
    masks = keras.layers.Softmax(axis=-1, name="masks")(model.output)
    return keras.Model(model.input, {"masks": masks}, name=model.name)


def describe(config: ModelConfig | dict) -> dict:
    """The JSON-friendly fields of ``config`` (what :func:`build_segmenter` takes)."""
    return dataclasses.asdict(model_config(config))
