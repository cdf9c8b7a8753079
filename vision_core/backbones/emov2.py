"""EMOv2 (Zhang et al. 2024, "EMOv2: Pushing 5M Vision Model Frontier").

A four-stage hierarchy of one block type, the improved inverted residual mobile block
(i2RMB), a Meta Mobile Block whose expansion operator is a 1x1 conv in stages 1-2 and
hybrid window attention (local + dilated "spanning" windows sharing q/k/v) in stages 3-4::

    x -> norm (BN in stages 1-2, LN in 3-4)
      -> expand: 1x1 conv + act  |  WindowAttention (qk 1x1, v 1x1 + act, C -> C * expansion)
      -> (+) depthwise kxk conv + BN + SiLU (the conv alone in the strided first block)
      -> 1x1 projection -> layer scale -> (+ x)

The first block of every stage halves the resolution, has no residual and doubles the
expansion ratio. Settings follow the official ``EMO2_{1,2,5}M_k5_hybrid`` (224 px).
Padding matches PyTorch's symmetric padding (explicit ZeroPadding2D before strided convs),
so the official PyTorch weights map one to one
(no converter is provided yet).

The batch norm that pre-normalises stages 1-2 sits on the residual stream, not after a
conv, so it is a :class:`~vision_core.layers.normalization.PreNormBatchNorm` (a 1x1
depthwise conv at inference): Keras' batch norm there quantizes the trained residual
stream to zeros in the int8 converter.

Input ``(H, W, 3)``; features C2..C5 are the outputs of stages 1..4 at strides 4..32
(the last block's ``stage{i}_block{n}_add``); the classifier adds the official LayerNorm
before pooling.
Stochastic depth (drop path 0.04-0.05 in the official recipe) is left out: it is an
identity at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

from vision_core.backbones.outputs import classifier_model, feature_model
from vision_core.backbones.registry import FEATURE_NAMES, register_backbone
from vision_core.backend import keras
from vision_core.layers.conv import apply_activation, conv_bn_act, dwconv_bn_act
from vision_core.layers.normalization import LayerNorm, PreNormBatchNorm
from vision_core.layers.window_attention import WindowAttention

NORM_EPSILON = 1e-6  # the official code uses 1e-6 for both BatchNorm and LayerNorm
BN_MOMENTUM = 0.9
LAYER_SCALE_INIT = 1e-6


@dataclass(frozen=True)
class StageConfig:
    depth: int
    channels: int
    expansion: float
    head_dim: int
    norm: str  # "batch" or "layer"
    activation: str
    attention: bool  # window attention instead of a 1x1 conv in the non-strided blocks


def _stages(depths, channels, expansions, head_dims):
    kinds = (("batch", "silu", False), ("batch", "silu", False), ("layer", "gelu", True), ("layer", "gelu", True))
    return tuple(StageConfig(d, c, e, h, *k) for d, c, e, h, k in zip(depths, channels, expansions, head_dims, kinds))


VARIANTS = {
    "emov2_1m": _stages((2, 2, 8, 3), (32, 48, 80, 180), (2.0, 2.5, 3.0, 3.5), (16, 16, 20, 20)),
    "emov2_2m": _stages((3, 3, 9, 3), (32, 48, 120, 200), (2.0, 2.5, 3.0, 3.5), (16, 16, 20, 20)),
    "emov2_5m": _stages((3, 3, 9, 3), (48, 72, 160, 288), (2.0, 3.0, 4.0, 4.0), (16, 24, 32, 32)),
}


def _norm(x, kind: str, name: str):
    if kind == "batch":
        return PreNormBatchNorm(epsilon=NORM_EPSILON, momentum=BN_MOMENTUM, name=name)(x)
    return LayerNorm(epsilon=NORM_EPSILON, name=name)(x)


def _symmetric_pad(x, kernel_size: int, name: str):
    # PyTorch pads (k - 1) // 2 on every side; TF "same" with stride 2 would shift by a pixel.
    return keras.layers.ZeroPadding2D((kernel_size - 1) // 2, name=name)(x)


def stem(x, channels: int):
    """3x3 stride-2 conv (bias) + BN + SiLU -> depthwise 3x3 + BN + SiLU -> 1x1 conv: (H/2, W/2, channels)."""
    x = _symmetric_pad(x, 3, "stem_pad")
    x = conv_bn_act(
        x, channels, 3, 2, name="stem_conv", activation="silu", padding="valid", use_bias=True, bn_epsilon=NORM_EPSILON
    )
    x = dwconv_bn_act(x, 3, name="stem_local", activation="silu", bn_epsilon=NORM_EPSILON)
    return keras.layers.Conv2D(channels, 1, use_bias=False, name="stem_pointwise")(x)


def i2rmb(
    x,
    channels: int,
    *,
    stride: int,
    expansion: float,
    stage: StageConfig,
    attention: bool,
    kernel_size: int,
    window_size: int,
    name: str,
):
    """Improved inverted residual mobile block: ``(H, W, C) -> (H / stride, W / stride, channels)``."""
    in_channels = x.shape[-1]
    mid_channels = int(in_channels * expansion)
    residual = stride == 1 and in_channels == channels
    shortcut = x
    x = _norm(x, stage.norm, f"{name}_norm")
    if attention:
        x = WindowAttention(
            num_heads=in_channels // stage.head_dim,
            key_dim=stage.head_dim,
            value_channels=mid_channels,
            window_size=window_size,
            value_activation=stage.activation,
            name=f"{name}_attention",
        )(x)
    else:
        x = keras.layers.Conv2D(mid_channels, 1, use_bias=True, name=f"{name}_expand_conv")(x)
        x = apply_activation(x, stage.activation, f"{name}_expand_act")
    local_input = x
    if stride > 1:
        local_input = _symmetric_pad(x, kernel_size, f"{name}_local_pad")
    local = dwconv_bn_act(
        local_input,
        kernel_size,
        stride,
        name=f"{name}_local",
        activation="silu",
        padding="same" if stride == 1 else "valid",
        bn_epsilon=NORM_EPSILON,
    )
    x = keras.layers.Add(name=f"{name}_local_add")([x, local]) if residual else local
    x = keras.layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_proj")(x)
    # Per-channel layer scale as a 1x1 depthwise conv: a plain Keras layer with C weights.
    x = keras.layers.DepthwiseConv2D(
        1,
        use_bias=False,
        depthwise_initializer=keras.initializers.Constant(LAYER_SCALE_INIT),
        name=f"{name}_layer_scale",
    )(x)
    if residual:
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def emov2(
    input_shape,
    num_classes=None,
    *,
    variant: str,
    kernel_size: int = 5,
    window_size: int = 7,
    classifier_activation=None,
    dropout: float = 0.0,
    stages: tuple[StageConfig, ...] | None = None,
):
    """Build EMOv2 ``variant``; ``window_size`` 7 at 224 px (the official 256/512 models use 8).

    ``stages`` replaces the variant's stage settings (then ``variant`` only names the model)."""
    stages = stages or VARIANTS[variant]
    inputs = keras.Input(input_shape, name="image")
    x = stem(inputs, stages[0].channels // 2)
    features = {}
    for index, stage in enumerate(stages, start=1):
        for block in range(1, stage.depth + 1):
            first = block == 1
            x = i2rmb(
                x,
                stage.channels,
                stride=2 if first else 1,
                expansion=stage.expansion * 2 if first else stage.expansion,
                stage=stage,
                attention=stage.attention and not first,
                kernel_size=kernel_size,
                window_size=window_size,
                name=f"stage{index}_block{block}",
            )
        features[FEATURE_NAMES[index - 1]] = x
    if num_classes is None:
        return feature_model(inputs, features, variant)
    x = LayerNorm(epsilon=NORM_EPSILON, name="head_norm")(x)
    return classifier_model(
        inputs, x, num_classes, variant, dropout=dropout, classifier_activation=classifier_activation
    )


@register_backbone
def emov2_1m(input_shape, num_classes=None, **options):
    """EMOv2-1M: 1.46M parameters with the 1000-class head (72.3% ImageNet top-1)."""
    return emov2(input_shape, num_classes, variant="emov2_1m", **options)


@register_backbone
def emov2_2m(input_shape, num_classes=None, **options):
    """EMOv2-2M: 2.38M parameters with the 1000-class head (75.8% ImageNet top-1)."""
    return emov2(input_shape, num_classes, variant="emov2_2m", **options)


@register_backbone
def emov2_5m(input_shape, num_classes=None, **options):
    """EMOv2-5M: 5.13M parameters with the 1000-class head (79.4% ImageNet top-1)."""
    return emov2(input_shape, num_classes, variant="emov2_5m", **options)
