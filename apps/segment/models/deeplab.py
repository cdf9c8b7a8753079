"""DeepLabv3+ (Chen et al. 2018): ASPP on ``C5`` and the low-level decoder.

ASPP on ``C5`` (stride 32 here; the paper dilates the backbone to stride 16, so its rates 6/12/18
are halved by default)::

    A = Concat(ConvBNReLU1x1(C5), ConvBNReLU3x3(C5, dilation r) for r in rates,
               Up(ConvBNReLU1x1(GlobalAvgPool(C5))))            image pooling, resized back
    x = ConvBNReLU1x1(A, channels)
    D = Concat(Up(x), ConvBNReLU1x1(low, 48))                    low = C2 (output stride 4) or C3 (8)
    logits = Conv1x1(ConvBNReLU3x3(ConvBNReLU3x3(D)), classes)

Every ASPP conv is a plain (not separable) conv; the dilated ones lower to int8 CONV_2D. Each
concatenation and the conv after it are one :func:`~apps.segment.models.blocks.conv_over_concat`.
"""

from __future__ import annotations

from apps.segment.models.blocks import conv_over_concat
from vision_core.backend import keras
from vision_core.layers.conv import conv_bn_act
from vision_core.necks.cross_scale_shift import resize_to, spatial_size

LOW_LEVEL_CHANNELS = 48


def aspp(x, channels: int, rates: tuple[int, ...], *, name: str = "aspp"):
    """Atrous spatial pyramid pooling on ``x`` -> ``[B, h, w, channels]``."""
    size = spatial_size(x)
    branches = [conv_bn_act(x, channels, 1, name=f"{name}_conv1x1")]
    branches += [conv_bn_act(x, channels, 3, dilation_rate=rate, name=f"{name}_atrous{rate}") for rate in rates]
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    pooled = conv_bn_act(pooled, channels, 1, name=f"{name}_pool_proj")
    branches.append(keras.layers.Resizing(*size, interpolation="bilinear", name=f"{name}_pool_resize")(pooled))
    return conv_over_concat(branches, channels, 1, name=f"{name}_project")


def deeplabv3plus_head(
    features: dict,
    num_classes: int,
    *,
    channels: int = 256,
    rates: tuple[int, ...] = (3, 6, 9),
    output_stride: int = 4,
    upsample: str = "bilinear",
    name: str = "deeplab",
):
    """Class logits ``[B, H / output_stride, W / output_stride, num_classes]`` (module docstring)."""
    low = features[{4: "C2", 8: "C3"}[output_stride]]
    x = aspp(features["C5"], channels, tuple(rates), name=f"{name}_aspp")
    x = resize_to(x, spatial_size(low), upsample=upsample, name=f"{name}_resize")
    low = conv_bn_act(low, LOW_LEVEL_CHANNELS, 1, name=f"{name}_low")
    x = conv_over_concat([x, low], channels, 3, name=f"{name}_decoder1")
    x = conv_bn_act(x, channels, 3, name=f"{name}_decoder2")
    return keras.layers.Conv2D(num_classes, 1, name=f"{name}_classifier")(x)
