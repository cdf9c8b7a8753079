"""Feature Pyramid Network as RetinaNet uses it (Lin et al. 2017, "Focal Loss for Dense Object Detection").

Inputs: backbone features ``C3, C4, C5`` (NHWC float, strides 8, 16, 32, any channels).
Outputs: ``{"P3": ..., "P7": ...}``, ``(B, ceil(H / s), ceil(W / s), channels)`` float for
strides s = 8 .. 128::

    M5 = Conv1x1(C5)
    M4 = Conv1x1(C4) + Up(M5)            Up: nearest-neighbour resize to the lateral's size
    M3 = Conv1x1(C3) + Up(M4)
    P3..P5 = Conv3x3(M3..M5)
    P6 = Conv3x3/2(C5)                   (p6_from="C5", the paper and Detectron; "P5": torchvision)
    P7 = Conv3x3/2(ReLU(P6))

Every conv has a bias and no norm or activation, as in RetinaNet. The upsampling is a
``Resizing(interpolation="nearest")``, one int8 RESIZE_NEAREST_NEIGHBOR (UpSampling2D
would lower to TILE/RESHAPE chains), and it matches odd-sized levels too.
"""

from __future__ import annotations

from vision_core.backend import keras
from vision_core.necks import register_neck
from vision_core.necks.cross_scale_shift import resize_to, spatial_size

P6_SOURCES = ("C5", "P5")


@register_neck
def fpn(features: dict, channels: int = 256, *, prefix: str = "fpn", p6_from: str = "C5") -> dict:
    """RetinaNet's FPN on ``features`` ``{"C3", "C4", "C5"}``: ``{"P3": ..., "P7": ...}``."""
    if p6_from not in P6_SOURCES:
        raise ValueError(f"{prefix}: p6_from must be one of {P6_SOURCES}, got {p6_from!r}")
    merged = {5: keras.layers.Conv2D(channels, 1, name=f"{prefix}_lateral5")(features["C5"])}
    for level in (4, 3):
        lateral = keras.layers.Conv2D(channels, 1, name=f"{prefix}_lateral{level}")(features[f"C{level}"])
        upsampled = resize_to(
            merged[level + 1], spatial_size(lateral), upsample="nearest", name=f"{prefix}_upsample{level + 1}"
        )
        merged[level] = keras.layers.Add(name=f"{prefix}_merge{level}")([lateral, upsampled])
    pyramid = {
        f"P{level}": keras.layers.Conv2D(channels, 3, padding="same", name=f"{prefix}_output{level}")(merged[level])
        for level in (3, 4, 5)
    }
    source = features["C5"] if p6_from == "C5" else pyramid["P5"]
    pyramid["P6"] = keras.layers.Conv2D(channels, 3, strides=2, padding="same", name=f"{prefix}_p6")(source)
    p6_relu = keras.layers.ReLU(name=f"{prefix}_p6_relu")(pyramid["P6"])
    pyramid["P7"] = keras.layers.Conv2D(channels, 3, strides=2, padding="same", name=f"{prefix}_p7")(p6_relu)
    return pyramid
