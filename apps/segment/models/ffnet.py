"""The FFNet up-head (Mehta et al. 2022, "Simple and Efficient Architectures for Semantic Segmentation").

On backbone features ``C2..C5`` (strides 4..32; ``C3..C5`` for output stride 8)::

    F_i  = ConvBNReLU1x1(C_i, adapter_i)                        adapter convs
    X_5  = F_5;  X_i = F_i + Up(ConvBNReLU1x1(X_{i+1}, adapter_i))  top-down, one level at a time
    S_i  = ConvBNReLU3x3(X_i, branch_i)                         the multi-scale outputs
    Y    = Concat(S_finest, Up(S_...))                          all at the finest level
    logits = Conv(ConvBNReLU(Y, mid, k), classes, k')           the segmentation head

The concatenation and the conv after it are one :func:`~apps.segment.models.blocks.conv_over_concat`.

Widths are the official code's head types (``Qualcomm-AI-research/FFNet``, ``models/ffnet_blocks.py``):
``A`` (the GPU models: adapters 64/128/256/512, branches 128 each, head 3x3 to 512 then 1x1),
``B`` (the mobile models: adapters 64/128/128/256, branches 96/96/64/32, head 3x3 to 256 then 3x3),
``C`` (adapters 128 each, branches 128/16/16/16, head 3x3 to 128 then 1x1). Mobile models upsample
with nearest neighbour, GPU models bilinearly. ``width`` scales every width (at least 8 channels).
"""

from __future__ import annotations

from typing import NamedTuple

from apps.segment.models.blocks import conv_over_concat
from vision_core.backend import keras
from vision_core.layers.conv import conv_bn_act
from vision_core.necks.cross_scale_shift import resize_to, spatial_size


class FFNetHead(NamedTuple):
    adapters: tuple[int, int, int, int]  # C2..C5
    branches: tuple[int, int, int, int]  # S2..S5
    mid: int
    last_kernel: int


FFNET_HEADS = {
    "A": FFNetHead((64, 128, 256, 512), (128, 128, 128, 128), 512, 1),
    "B": FFNetHead((64, 128, 128, 256), (96, 96, 64, 32), 256, 3),
    "C": FFNetHead((128, 128, 128, 128), (128, 16, 16, 16), 128, 1),
}


def scaled(channels: int, width: float) -> int:
    return max(8, int(round(channels * width)))


def ffnet_up_head(
    features: dict,
    num_classes: int,
    head: str = "B",
    *,
    width: float = 1.0,
    upsample: str = "nearest",
    output_stride: int = 4,
    name: str = "ffnet",
):
    """Class logits ``[B, H / output_stride, W / output_stride, num_classes]`` (module docstring)."""
    if head not in FFNET_HEADS:
        raise ValueError(f"unknown FFNet head {head!r}; expected one of {', '.join(FFNET_HEADS)}")
    spec = FFNET_HEADS[head]
    first = {4: 2, 8: 3}[output_stride]
    levels = list(range(first, 6))
    adapted = {
        level: conv_bn_act(
            features[f"C{level}"], scaled(spec.adapters[level - 2], width), 1, name=f"{name}_adapter{level}"
        )
        for level in levels
    }
    merged = {5: adapted[5]}
    for level in reversed(levels[:-1]):
        lateral = adapted[level]
        reduced = conv_bn_act(merged[level + 1], int(lateral.shape[-1]), 1, name=f"{name}_up{level + 1}")
        upsampled = resize_to(reduced, spatial_size(lateral), upsample=upsample, name=f"{name}_resize{level + 1}")
        merged[level] = keras.layers.Add(name=f"{name}_merge{level}")([lateral, upsampled])
    size = spatial_size(merged[first])
    outputs = [
        resize_to(
            conv_bn_act(merged[level], scaled(spec.branches[level - 2], width), 3, name=f"{name}_smooth{level}"),
            size,
            upsample=upsample,
            name=f"{name}_cat_resize{level}",
        )
        for level in levels
    ]
    x = conv_over_concat(outputs, scaled(spec.mid, width), 3, name=f"{name}_seg")
    return keras.layers.Conv2D(num_classes, spec.last_kernel, padding="same", name=f"{name}_classifier")(x)
