"""Convolution + batch norm + activation, the unit every CNN backbone repeats.

Layer names follow ``{name}_conv``, ``{name}_bn``, ``{name}_act`` so variable paths are
stable across Keras flavours. Every activation here lowers to an int8 TFLite builtin
(RELU, RELU6, HARD_SWISH, LOGISTIC, GELU) and is understood by vision_core.quant.
"""

from __future__ import annotations

from vision_core.backend import keras

BN_EPSILON = 1e-5  # PyTorch's default, used by every reference architecture here
BN_MOMENTUM = 0.9


def activation_layer(activation: str | None, name: str):
    """A named activation layer; ``None`` or ``"linear"`` gives none."""
    if activation in (None, "linear"):
        return None
    if activation == "relu":
        return keras.layers.ReLU(name=name)
    if activation == "relu6":
        return keras.layers.ReLU(max_value=6.0, name=name)
    return keras.layers.Activation(activation, name=name)


def apply_activation(x, activation: str | None, name: str):
    layer = activation_layer(activation, name)
    return x if layer is None else layer(x)


def conv_bn_act(
    x,
    filters: int,
    kernel_size: int = 3,
    strides: int = 1,
    *,
    name: str,
    activation: str | None = "relu",
    groups: int = 1,
    padding: str = "same",
    use_bias: bool = False,
    dilation_rate: int = 1,
    bn_epsilon: float = BN_EPSILON,
    bn_gamma_initializer: str = "ones",
):
    """``Conv2D(groups) -> BatchNormalization -> activation`` on NHWC ``x``.

    ``bn_gamma_initializer="zeros"`` starts a residual branch at zero (Goyal et al. 2017).
    """
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        dilation_rate=dilation_rate,
        use_bias=use_bias,
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(
        epsilon=bn_epsilon, momentum=BN_MOMENTUM, gamma_initializer=bn_gamma_initializer, name=f"{name}_bn"
    )(x)
    return apply_activation(x, activation, f"{name}_act")


def dwconv_bn_act(
    x,
    kernel_size: int = 3,
    strides: int = 1,
    *,
    name: str,
    activation: str | None = "relu",
    padding: str = "same",
    use_bias: bool = False,
    dilation_rate: int = 1,
    bn_epsilon: float = BN_EPSILON,
):
    """``DepthwiseConv2D -> BatchNormalization -> activation`` on NHWC ``x``."""
    x = keras.layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        dilation_rate=dilation_rate,
        name=f"{name}_dwconv",
    )(x)
    x = keras.layers.BatchNormalization(epsilon=bn_epsilon, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return apply_activation(x, activation, f"{name}_act")
