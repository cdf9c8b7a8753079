"""Detection heads: per-level feature maps in, flat per-anchor predictions out.

Every head returns ``(box_encodings, class_logits)``: ``[B, A, 4]`` encodings ``(ty, tx,
th, tw)`` (see :mod:`vision_core.detection.boxes`) and ``[B, A, C]`` logits, flattened
level by level (finest first), then row, column and the anchors of one location — the
order of :mod:`vision_core.detection.anchors`. ``C`` is ``K`` for sigmoid heads
(RetinaNet) and ``K + 1`` with column 0 background for softmax heads (SSD).

* :func:`retinanet_head` — RetinaNet's class and box subnets: ``depth`` x (3x3 conv,
  ``channels``, [BN,] ReLU) then a 3x3 predictor, **shared across levels** (one set of conv
  weights applied to every level); predictors initialised as in the paper (weights N(0, 0.01),
  class bias ``-log((1 - pi) / pi)`` with prior ``pi = 0.01``).
* :func:`ssd_head` — SSD's per-layer 3x3 predictors (one pair per layer, not shared), or
  SSDLite's (``separable``: depthwise 3x3 + BN + ReLU6, then a pointwise 1x1 predictor, as
  in the MobileNetV2 paper).
"""

from __future__ import annotations

import math

from vision_core.backend import keras
from vision_core.layers.conv import BN_EPSILON, BN_MOMENTUM, dwconv_bn_act

PRIOR_PROBABILITY = 0.01


def _flatten(per_level: list, width: int, *, name: str):
    """``[B, h, w, n * width]`` maps -> ``[B, sum(h w n), width]``, levels concatenated in order; layer ``name``."""
    if len(per_level) == 1:
        return keras.layers.Reshape((-1, width), name=name)(per_level[0])
    flat = [keras.layers.Reshape((-1, width), name=f"{name}_flat{index}")(x) for index, x in enumerate(per_level)]
    return keras.layers.Concatenate(axis=1, name=name)(flat)


def _subnet(
    levels: list, depth: int, channels: int, outputs: int, bias_initializer, *, name: str, norm: bool = False
) -> list:
    """One RetinaNet subnet applied with shared weights to every level; ``[B, h, w, outputs]`` per level.

    ``norm``: batch norm after each conv (no conv bias), with its own statistics per level.
    """
    convs = [
        keras.layers.Conv2D(
            channels,
            3,
            padding="same",
            name=f"{name}_conv{i}",
            use_bias=not norm,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        )
        for i in range(depth)
    ]
    predictor = keras.layers.Conv2D(
        outputs,
        3,
        padding="same",
        name=f"{name}_predict",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        bias_initializer=bias_initializer,
    )
    results = []
    for level, x in enumerate(levels):
        for i, conv in enumerate(convs):
            x = conv(x)
            if norm:
                x = keras.layers.BatchNormalization(
                    epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn{i}_level{level}"
                )(x)
            x = keras.layers.ReLU(name=f"{name}_relu{i}_level{level}")(x)
        results.append(predictor(x))
    return results


def retinanet_head(
    levels: list,
    num_classes: int,
    anchors_per_location: int,
    depth: int = 4,
    channels: int = 256,
    norm: bool = False,
    *,
    name: str = "head",
):
    """RetinaNet subnets on ``levels`` (NHWC, equal channels): ``(box_encodings [B, A, 4], class_logits [B, A, K])``.

    ``norm`` adds batch norm after the subnet convs (per level, as EfficientDet): not in the
    paper, but it makes training from scratch converge in a few epochs.
    """
    prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    n = anchors_per_location
    classes = _subnet(
        levels, depth, channels, n * num_classes, keras.initializers.Constant(prior), name=f"{name}_class", norm=norm
    )
    boxes = _subnet(levels, depth, channels, n * 4, "zeros", name=f"{name}_box", norm=norm)
    return (_flatten(boxes, 4, name="box_encodings"), _flatten(classes, num_classes, name="class_logits"))


def ssd_head(layers: list, num_classes: int, boxes_per_location, separable: bool = False, *, name: str = "head"):
    """SSD predictors on ``layers`` (NHWC, any channels): ``(box_encodings [B, A, 4], class_logits [B, A, K + 1])``.

    ``boxes_per_location``: default boxes per cell of each layer. Column 0 of the logits is background.
    """
    boxes, classes = [], []
    for index, (x, n) in enumerate(zip(layers, boxes_per_location)):
        for kind, width, out in (("box", 4, boxes), ("class", num_classes + 1, classes)):
            prefix = f"{name}_{kind}{index}"
            if separable:
                y = dwconv_bn_act(x, 3, name=f"{prefix}_dw", activation="relu6")
                out.append(keras.layers.Conv2D(n * width, 1, name=f"{prefix}_predict")(y))
            else:
                out.append(keras.layers.Conv2D(n * width, 3, padding="same", name=f"{prefix}_predict")(x))
    return (_flatten(boxes, 4, name="box_encodings"), _flatten(classes, num_classes + 1, name="class_logits"))
