"""RevCol: Reversible Column Networks (Cai et al., ICLR 2023), variants T, S and B.

The layout follows the official classification model (megvii-research/RevCol,
``models/revcol.py``, ``models/modules.py``)::

    stem      Conv 4x4 / 4 -> LayerNorm                                  (H/4, W/4, C0)
    column i  (i = 0 .. N-1), levels l = 0..3 at strides 4, 8, 16, 32, channels C_l:
        fusion_l  = down(c_{l-1} of this column) + up(c_{l+1} of column i-1)
                    down: Conv 2x2 / 2 -> LayerNorm     (levels 1-3; level 0 takes the stem)
                    up:   1x1 Conv C_{l+1} -> C_l -> LayerNorm -> nearest x2
                          (levels 0-2, not in column 0)
        c_l       = gamma_l * c_l(column i-1) + ConvNeXt blocks(fusion_l)
                    (the reversible connection; gamma_l is one learnable scale per channel,
                    kept at |gamma| >= 1e-3 so the column stays invertible)
    ConvNeXt block: depthwise kxk -> LayerNorm -> 1x1 Conv 4C -> GELU -> 1x1 Conv C
                    -> layer scale -> + input
    head      global average pool -> LayerNorm -> Dense "predictions"   (num_classes)

Features ``C2..C5`` are the last column's levels 0..3 (NHWC float, strides 4..32,
channels C0..C3). Input: NHWC float, already normalised; sides divisible by 32 give
the exact strides.

Variants (official configs; the depthwise kernel is 3x3 as in the official code)::

    name      channels              blocks per level   columns   params (1000 classes)
    revcol_t  (64, 128, 256, 512)   (2, 2, 4, 2)         4        30.5M   (paper: 30M)
    revcol_s  (64, 128, 256, 512)   (2, 2, 4, 2)         8        60.6M   (paper: 60M)
    revcol_b  (72, 144, 288, 576)   (1, 1, 3, 2)        16       138.6M   (paper: 138M)

The counts hold the one classification head (the official ``cls``); the official
training recipe's intermediate supervision (three extra classifiers and image
decoders on earlier columns) is training-only and not built here. Column 0 has no
reversible scale (the official one multiplies zeros), so the counts are 960 (T, S) or
1,080 (B) below the official module's. The official
memory-saving backward (recomputing activations by inverting the columns) is not
implemented: gradients come from ordinary backpropagation, the forward is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vision_core.backbones.outputs import classifier_model, feature_model
from vision_core.backbones.registry import FEATURE_NAMES, register_backbone
from vision_core.backend import keras, tf
from vision_core.layers.normalization import LayerNorm
from vision_core.layers.quantizable import QuantizableLayer, custom_layer, serializable

LN_EPSILON = 1e-6
MLP_EXPANSION = 4
LEVELS = 4


@dataclass(frozen=True)
class RevColConfig:
    channels: tuple[int, int, int, int]
    blocks: tuple[int, int, int, int]  # ConvNeXt blocks per level, the same in every column
    columns: int


CONFIGS = {
    "revcol_t": RevColConfig((64, 128, 256, 512), (2, 2, 4, 2), 4),
    "revcol_s": RevColConfig((64, 128, 256, 512), (2, 2, 4, 2), 8),
    "revcol_b": RevColConfig((72, 144, 288, 576), (1, 1, 3, 2), 16),
}


@serializable
class MinMagnitude(keras.constraints.Constraint):
    """Keep ``|w| >= minimum`` with ``w``'s sign (the official code clamps after each step)."""

    def __init__(self, minimum: float = 1e-3):
        self.minimum = minimum

    def __call__(self, w):
        sign = tf.where(w < 0, -tf.ones_like(w), tf.ones_like(w))
        return sign * tf.maximum(tf.abs(w), self.minimum)

    def get_config(self):
        return {"minimum": self.minimum}


@custom_layer
class ChannelScale(QuantizableLayer):
    """``x * gamma`` with one learnable ``gamma`` per channel (last axis); any input rank.

    Used for ConvNeXt's layer scale and for the reversible connection's scale.
    ``min_magnitude > 0`` keeps ``|gamma|`` at least that large after every update.
    """

    quantized_weights = ("gamma",)
    quantize_output = True
    scale_weight = "gamma"

    def __init__(self, init_value: float = 1.0, min_magnitude: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.init_value = init_value
        self.min_magnitude = min_magnitude

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(int(input_shape[-1]),),
            initializer=keras.initializers.Constant(self.init_value),
            constraint=MinMagnitude(self.min_magnitude) if self.min_magnitude else None,
        )
        super().build(input_shape)

    def call(self, x):
        return x * self.gamma

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value, "min_magnitude": self.min_magnitude}


def _init():
    # Official init for every conv and linear layer: truncated normal, std 0.02, zero bias.
    return keras.initializers.TruncatedNormal(stddev=0.02)


def _conv(x, filters: int, kernel_size: int, strides: int, name: str):
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, kernel_initializer=_init(), name=name)(x)


def _layer_norm(x, name: str):
    return LayerNorm(epsilon=LN_EPSILON, name=name)(x)


def convnext_block(x, kernel_size: int, layer_scale_init: float, drop_path: float, name: str):
    """ConvNeXt block on ``(B, H, W, C)``; same shape out. Pointwise layers are 1x1 convs."""
    channels = x.shape[-1]
    y = keras.layers.DepthwiseConv2D(kernel_size, padding="same", depthwise_initializer=_init(), name=f"{name}_dwconv")(
        x
    )
    y = _layer_norm(y, f"{name}_norm")
    y = _conv(y, MLP_EXPANSION * channels, 1, 1, f"{name}_pwconv1")
    y = keras.layers.Activation("gelu", name=f"{name}_gelu")(y)  # exact (erf) GELU in both flavours
    y = _conv(y, channels, 1, 1, f"{name}_pwconv2")
    y = ChannelScale(layer_scale_init, name=f"{name}_layer_scale")(y)
    if drop_path:
        # Stochastic depth: dropping whole samples (noise shape B,1,1,1) is timm's DropPath.
        y = keras.layers.Dropout(drop_path, noise_shape=(None, 1, 1, 1), name=f"{name}_drop_path")(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def _downsample(x, channels: int, name: str):
    """``(B, 2H, 2W, C_{l-1}) -> (B, H, W, C_l)``: the fusion input from the level below."""
    return _layer_norm(_conv(x, channels, 2, 2, f"{name}_down_conv"), f"{name}_down_norm")


def _upsample(x, channels: int, size: tuple[int, int], name: str):
    """``(B, H/2, W/2, C_{l+1}) -> (B, H, W, C_l)``: the fusion input from the level above."""
    x = _layer_norm(_conv(x, channels, 1, 1, f"{name}_up_proj"), f"{name}_up_norm")
    # Resizing lowers to RESIZE_NEAREST_NEIGHBOR in both flavours (UpSampling2D: TILE in Keras 3).
    return keras.layers.Resizing(size[0], size[1], interpolation="nearest", name=f"{name}_up_resize")(x)


def column(
    stem,
    previous: list | None,
    index: int,
    config: RevColConfig,
    kernel_size: int,
    layer_scale_init: float,
    reversible_scale_init: float,
    drop_path_rate: float,
) -> list:
    """One column: the stem output and the previous column's 4 levels -> this column's 4 levels."""
    # Drop-path rates rise linearly over one column's blocks, the same in every column (official).
    depth = sum(config.blocks)
    rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
    levels: list = []
    for level in range(LEVELS):
        name = f"column{index}_level{level}"
        channels = config.channels[level]
        x = stem if level == 0 else _downsample(levels[-1], channels, name)
        if previous is not None and level < LEVELS - 1:
            up = _upsample(previous[level + 1], channels, tuple(x.shape[1:3]), name)
            x = keras.layers.Add(name=f"{name}_fusion")([x, up])
        for block in range(config.blocks[level]):
            rate = rates[sum(config.blocks[:level]) + block]
            x = convnext_block(x, kernel_size, layer_scale_init, rate, f"{name}_block{block}")
        if previous is not None:
            # The first column has nothing to carry: its levels start from zero.
            carried = ChannelScale(reversible_scale_init, min_magnitude=1e-3, name=f"{name}_reversible_scale")(
                previous[level]
            )
            x = keras.layers.Add(name=f"{name}_reversible_add")([carried, x])
        levels.append(x)
    return levels


def revcol(
    input_shape,
    config: RevColConfig,
    name: str,
    num_classes: int | None = None,
    *,
    kernel_size: int = 3,
    layer_scale_init: float = 1e-6,
    reversible_scale_init: float = 0.5,
    drop_path_rate: float = 0.0,
    classifier_activation: str | None = None,
):
    """Build RevCol; ``kernel_size`` is the ConvNeXt depthwise kernel (official: 3).

    ``drop_path_rate``: stochastic depth of the deepest block in each column (official
    ImageNet recipe: 0.1 / 0.3 / 0.4 for T / S / B, 0.3 when fine-tuning detection).
    """
    inputs = keras.Input(input_shape, name="image")
    stem = _layer_norm(_conv(inputs, config.channels[0], 4, 4, "stem_conv"), "stem_norm")
    levels = None
    for index in range(config.columns):
        levels = column(
            stem, levels, index, config, kernel_size, layer_scale_init, reversible_scale_init, drop_path_rate
        )
    if num_classes is None:
        return feature_model(inputs, dict(zip(FEATURE_NAMES, levels)), name)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(levels[-1])
    x = _layer_norm(x, "head_norm")  # the official head normalises the pooled vector
    return classifier_model(inputs, x, num_classes, name, classifier_activation=classifier_activation, pool=False)


def first_column_twin(name: str, input_shape, num_classes: int, **options):
    """RevCol ``name`` cut to its first column, with the same head: its layers have the full model's
    names, so its weights copy into the full model by path (the later columns keep their own)."""
    return revcol(input_shape, replace(CONFIGS[name], columns=1), name, num_classes, **options)


@register_backbone
def revcol_t(input_shape, num_classes=None, **options):
    return revcol(input_shape, CONFIGS["revcol_t"], "revcol_t", num_classes, **options)


@register_backbone
def revcol_s(input_shape, num_classes=None, **options):
    return revcol(input_shape, CONFIGS["revcol_s"], "revcol_s", num_classes, **options)


@register_backbone
def revcol_b(input_shape, num_classes=None, **options):
    return revcol(input_shape, CONFIGS["revcol_b"], "revcol_b", num_classes, **options)
