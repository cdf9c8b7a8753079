"""LR-ASPP, the lite segmentation head of MobileNetV3 (Howard et al. 2019, Sec. 6.4; torchvision's ``LRASPP``).

On a high-level feature ``C5`` (stride 32 here: the suite's backbones are not dilated; the paper's
last stage runs at stride 16) and a low-level one (``C3``, or ``C2`` for output stride 4)::

    x = ConvBNReLU1x1(C5, channels) * Sigmoid(Conv1x1(GlobalAvgPool(C5), channels))
    logits = Conv1x1(Up(x), classes) + Conv1x1(low, classes)        at the low-level stride

The pooling branch is the global one (torchvision), not the paper's 49x49 average pool.
"""

from __future__ import annotations

from vision_core.backend import keras
from vision_core.layers.conv import conv_bn_act
from vision_core.necks.cross_scale_shift import resize_to, spatial_size


def lraspp_head(
    features: dict,
    num_classes: int,
    *,
    channels: int = 128,
    output_stride: int = 8,
    upsample: str = "bilinear",
    name: str = "lraspp",
):
    """Class logits ``[B, H / output_stride, W / output_stride, num_classes]`` (module docstring)."""
    high, low = features["C5"], features[{4: "C2", 8: "C3"}[output_stride]]
    x = conv_bn_act(high, channels, 1, name=f"{name}_high")
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(high)
    gate = keras.layers.Conv2D(channels, 1, name=f"{name}_gate_conv")(gate)
    gate = keras.layers.Activation("sigmoid", name=f"{name}_gate")(gate)
    x = keras.layers.Multiply(name=f"{name}_gated")([x, gate])
    x = resize_to(x, spatial_size(low), upsample=upsample, name=f"{name}_resize")
    high_logits = keras.layers.Conv2D(num_classes, 1, name=f"{name}_high_classifier")(x)
    low_logits = keras.layers.Conv2D(num_classes, 1, name=f"{name}_low_classifier")(low)
    return keras.layers.Add(name=f"{name}_logits")([high_logits, low_logits])
