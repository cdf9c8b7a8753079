"""MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks.

The layout and layer names are keras.applications.MobileNetV2's, so its ImageNet weights
load by layer name (:func:`vision_core.backbones.pretrained.load_keras_applications_weights`)
and the two are the same function. ``alpha`` is the width multiplier (0.35 to 1.4).

Features: C2 = ``block_2_add`` (stride 4), C3 = ``block_5_add`` (8), C4 = ``block_12_add``
(16), C5 = ``out_relu`` (32, 1280 channels, or ``1280 * alpha`` for alpha > 1).
"""

from __future__ import annotations

import math

from vision_core.backbones.outputs import classifier_model, feature_model
from vision_core.backbones.registry import register_backbone
from vision_core.backend import keras

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.999
ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)

# (output channels, stride, expansion, blocks) per stage; block_id counts the blocks from 0.
STAGES = (
    (16, 1, 1, 1),
    (24, 2, 6, 2),
    (32, 2, 6, 3),
    (64, 2, 6, 4),
    (96, 1, 6, 3),
    (160, 2, 6, 3),
    (320, 1, 6, 1),
)
FEATURE_STAGES = {1: "C2", 2: "C3", 4: "C4"}  # their last block's output (stride 4, 8, 16)


def stage_repeats(depth_multiplier: float = 1.0) -> tuple[int, ...]:
    """Blocks per stage: ``ceil(blocks * depth_multiplier)``, as timm scales MobileNetV2's depth."""
    return tuple(math.ceil(blocks * depth_multiplier) for *_, blocks in STAGES)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without dropping below 90% of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _bn(x, name: str, epsilon: float = BN_EPSILON):
    return keras.layers.BatchNormalization(epsilon=epsilon, momentum=BN_MOMENTUM, name=name)(x)


def _stride2_padding(x, kernel_size: int = 3):
    # keras.applications' correct_pad: TF "same" puts the extra row/column at the end.
    adjust = [1 - int(d) % 2 for d in x.shape[1:3]]
    half = kernel_size // 2
    return ((half - adjust[0], half), (half - adjust[1], half))


def inverted_residual(
    x,
    filters: int,
    stride: int,
    expansion: int,
    alpha: float,
    block_id: int,
    bn_epsilon: float = BN_EPSILON,
    torch_padding: bool = False,
):
    """Expand 1x1 (ReLU6) -> depthwise 3x3 (ReLU6) -> linear 1x1 projection (+ identity).

    ``torch_padding``: a strided depthwise conv pads one pixel on every side (PyTorch) instead of
    keras.applications' TF "same" (the extra row and column at the end)."""
    in_channels = x.shape[-1]
    out_channels = make_divisible(filters * alpha, 8)
    inputs = x
    if block_id:
        prefix = f"block_{block_id}_"
        x = keras.layers.Conv2D(expansion * in_channels, 1, use_bias=False, name=f"{prefix}expand")(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(_bn(x, f"{prefix}expand_BN", bn_epsilon))
    else:
        prefix = "expanded_conv_"
    if stride == 2:
        x = keras.layers.ZeroPadding2D(1 if torch_padding else _stride2_padding(x), name=f"{prefix}pad")(x)
    x = keras.layers.DepthwiseConv2D(
        3, strides=stride, use_bias=False, padding="same" if stride == 1 else "valid", name=f"{prefix}depthwise"
    )(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(_bn(x, f"{prefix}depthwise_BN", bn_epsilon))
    x = keras.layers.Conv2D(out_channels, 1, use_bias=False, name=f"{prefix}project")(x)
    x = _bn(x, f"{prefix}project_BN", bn_epsilon)
    if in_channels == out_channels and stride == 1:
        return keras.layers.Add(name=f"{prefix}add")([inputs, x])
    return x


@register_backbone
def mobilenet_v2(
    input_shape,
    num_classes=None,
    *,
    alpha: float = 1.0,
    classifier_activation=None,
    dropout=0.0,
    depth_multiplier: float = 1.0,
    last_channels: int | None = None,
    bn_epsilon: float = BN_EPSILON,
    torch_padding: bool = False,
):
    """MobileNetV2 of width ``alpha``; the defaults are keras.applications' network.

    PyTorch-trained weights (timm, torchvision) compute what they compute in PyTorch with
    ``bn_epsilon=1e-5, torch_padding=True`` (symmetric padding of the strided convs).
    ``depth_multiplier`` scales the blocks per stage (:func:`stage_repeats`) and ``last_channels``
    sets the width of the last 1x1 conv (default 1280, ``1280 * alpha`` above alpha 1), as timm's
    constructor arguments do.
    """
    if not 0.35 <= alpha <= 1.4:
        raise ValueError(f"mobilenet_v2: alpha must be in [0.35, 1.4], got {alpha}")
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    if torch_padding:
        x = keras.layers.ZeroPadding2D(1, name="Conv1_pad")(x)
    x = keras.layers.Conv2D(
        make_divisible(32 * alpha, 8),
        3,
        strides=2,
        padding="valid" if torch_padding else "same",
        use_bias=False,
        name="Conv1",
    )(x)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(_bn(x, "bn_Conv1", bn_epsilon))
    features = {}
    block_id = 0
    for stage, ((filters, stride, expansion, _), repeats) in enumerate(zip(STAGES, stage_repeats(depth_multiplier))):
        for i in range(repeats):
            x = inverted_residual(
                x, filters, stride if i == 0 else 1, expansion, alpha, block_id, bn_epsilon, torch_padding
            )
            block_id += 1
        if stage in FEATURE_STAGES:
            features[FEATURE_STAGES[stage]] = x
    if last_channels is None:
        last_channels = make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    x = keras.layers.Conv2D(last_channels, 1, use_bias=False, name="Conv_1")(x)
    x = keras.layers.ReLU(6.0, name="out_relu")(_bn(x, "Conv_1_bn", bn_epsilon))
    features["C5"] = x
    name = f"mobilenet_v2_{alpha:g}"
    if num_classes is None:
        return feature_model(inputs, features, name)
    return classifier_model(inputs, x, num_classes, name, dropout=dropout, classifier_activation=classifier_activation)
