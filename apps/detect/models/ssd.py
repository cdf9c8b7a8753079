"""SSD (Liu et al. 2016) and SSDLite (Sandler et al. 2018, MobileNetV2 Sec. 6.2) on any backbone.

Prediction layers: the backbone's ``C<first_level>`` .. ``C5`` (strides ``2**first_level``
.. 32), then extra feature layers, each halving the size, until ``num_layers`` layers:

* SSD: ``Conv1x1(c / 2) + BN + ReLU -> Conv3x3/2(c) + BN + ReLU``;
* SSDLite: ``Conv1x1(c / 2) + BN + ReLU6 -> DW3x3/2 + BN + ReLU6 -> Conv1x1(c) + BN + ReLU6``
  (every regular conv of the extras and the heads replaced by a separable one).

``c`` = ``EXTRA_CHANNELS`` (MobileNetV2-SSDLite's 512, 256, 256, 128, then 128). Default
boxes: :class:`vision_core.detection.anchors.SSDDefaultBoxes` on the layers' strides.
Class logits ``[B, A, K + 1]``, column 0 background (softmax, MultiBox loss).
"""

from __future__ import annotations

from apps.detect.models.heads import ssd_head
from vision_core.layers.conv import conv_bn_act, dwconv_bn_act

EXTRA_CHANNELS = (512, 256, 256, 128, 128, 128)


def extra_layer(x, channels: int, separable: bool, *, name: str):
    """One SSD extra feature layer: ``(B, H, W, _) -> (B, ceil(H / 2), ceil(W / 2), channels)``."""
    activation = "relu6" if separable else "relu"
    x = conv_bn_act(x, channels // 2, 1, name=f"{name}_reduce", activation=activation)
    if separable:
        x = dwconv_bn_act(x, 3, 2, name=f"{name}_dw", activation=activation)
        return conv_bn_act(x, channels, 1, name=f"{name}_project", activation=activation)
    return conv_bn_act(x, channels, 3, 2, name=f"{name}_conv", activation=activation)


def ssd_layers(features: dict, first_level: int, num_layers: int, separable: bool) -> list:
    """The prediction layers (NHWC), finest first: backbone ``C<first_level>..C5``, then extras."""
    layers = [features[f"C{level}"] for level in range(first_level, 6)]
    if len(layers) > num_layers:
        raise ValueError(f"SSD with {num_layers} layers cannot start at C{first_level}")
    for index in range(num_layers - len(layers)):
        layers.append(extra_layer(layers[-1], EXTRA_CHANNELS[index], separable, name=f"extra{index + 1}"))
    return layers


def ssd(
    backbone,
    num_classes: int,
    boxes_per_location,
    *,
    first_level: int = 4,
    num_layers: int = 6,
    separable: bool = False,
):
    """SSD / SSDLite on a feature model ``backbone``: ``(box_encodings, class_logits)`` tensors."""
    layers = ssd_layers(backbone.output, first_level, num_layers, separable)
    return ssd_head(layers, num_classes, boxes_per_location, separable=separable)


def strides(first_level: int = 4, num_layers: int = 6) -> tuple[int, ...]:
    """The strides of the prediction layers."""
    return tuple(2 ** (first_level + i) for i in range(num_layers))
