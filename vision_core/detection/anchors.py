"""Anchor boxes of RetinaNet and default boxes of SSD, for one fixed input size.

Box format: every anchor is **xyxy in absolute pixels, float32**, ``[A, 4]`` =
``(xmin, ymin, xmax, ymax)`` of the ``(height, width)`` input; anchors are not clipped
to the image.

Order (the order a detection head's outputs must be flattened in): level by level (finest
first), then row ``y``, then column ``x``, then the anchors of one location in the order of
:meth:`RetinaNetAnchors.shapes` / :meth:`SSDDefaultBoxes.scale_ratios`. A head emitting
``[B, fh, fw, n * 4]`` per level, reshaped to ``[B, fh * fw * n, 4]`` and concatenated over levels, lines up with it.

Geometry shared by both: a level of stride ``s`` has a ``ceil(H / s) x ceil(W / s)`` grid
(what a stack of stride-2 ``padding="same"`` layers gives), and the anchor centres of cell
``(i, j)`` are ``((j + 0.5) * W / fw, (i + 0.5) * H / fh)`` — the cells tile the image
evenly, which is ``(j + 0.5) * s`` when ``s`` divides the size. An aspect ratio ``r`` is
``width / height``: a box of size ``S`` has width ``S * sqrt(r)`` and height ``S / sqrt(r)``.

Boxes are computed once per (configuration, input size) and returned read-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


def feature_size(image_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """``(fh, fw)``: the grid of a level of ``stride`` on an ``(height, width)`` input."""
    return math.ceil(image_size[0] / stride), math.ceil(image_size[1] / stride)


def grid_boxes(image_size: tuple[int, int], stride: int, shapes) -> np.ndarray:
    """xyxy pixel boxes ``[fh * fw * n, 4]`` float32: ``n`` box ``shapes`` ``(width, height)`` in
    pixels at every cell of the ``stride`` grid, ordered y, x, shape."""
    height, width = image_size
    fh, fw = feature_size(image_size, stride)
    cy = (np.arange(fh, dtype=np.float64) + 0.5) * height / fh
    cx = (np.arange(fw, dtype=np.float64) + 0.5) * width / fw
    half = np.asarray(shapes, np.float64) / 2  # [n, 2] = (half width, half height)
    cx, cy = (c[:, :, None] for c in np.meshgrid(cx, cy))  # [fh, fw, 1] each
    boxes = np.stack([cx - half[:, 0], cy - half[:, 1], cx + half[:, 0], cy + half[:, 1]], axis=-1)
    return boxes.reshape(-1, 4).astype(np.float32)


@dataclass(frozen=True)
class RetinaNetAnchors:
    """RetinaNet anchors: on levels of ``strides`` (P3-P7 by default), base ``sizes`` in pixels,
    each times every scale of ``scales`` and every ratio of ``aspect_ratios`` (``width / height``).

    Calling it with an ``(height, width)`` input size gives xyxy pixel boxes ``[A, 4]``
    float32; 512 x 512 with the defaults gives ``(64² + 32² + 16² + 8² + 4²) * 9 = 49104``.
    Within a location: scales outer, aspect ratios inner (see :meth:`shapes`).
    """

    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)
    scales: tuple[float, ...] = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)

    def __post_init__(self):
        if len(self.strides) != len(self.sizes):
            raise ValueError(f"one size per stride: {len(self.strides)} strides, {len(self.sizes)} sizes")

    def shapes(self, level: int) -> list[tuple[float, float]]:
        """``(width, height)`` in pixels of the anchors of one location of ``level`` (0 = finest)."""
        return [
            (self.sizes[level] * scale * math.sqrt(ratio), self.sizes[level] * scale / math.sqrt(ratio))
            for scale in self.scales
            for ratio in self.aspect_ratios
        ]

    @property
    def boxes_per_location(self) -> tuple[int, ...]:
        """Anchors per grid cell, one entry per level (the head's ``n``)."""
        return (len(self.scales) * len(self.aspect_ratios),) * len(self.strides)

    def __call__(self, image_size: tuple[int, int]) -> np.ndarray:
        return _cached(self, tuple(int(s) for s in image_size))


@dataclass(frozen=True)
class SSDDefaultBoxes:
    """SSD default boxes as in MobileNetV2-SSDLite (TF object detection API's ``ssd_anchor_generator``).

    ``num = len(strides)`` layers; layer ``k`` has scale ``s_k = min_scale + (max_scale -
    min_scale) * k / (num - 1)`` (``s_num = 1``), and one box per ratio of ``aspect_ratios``
    of size ``s_k * min(H, W)`` plus one of ratio 1 and scale ``sqrt(s_k * s_{k+1})``. With
    ``reduce_boxes_in_lowest_layer`` the first layer has only ``(0.1, 1), (s_0, 2), (s_0,
    1/2)`` (scale, ratio), as MobileNet-SSD does. Calling it with an ``(height, width)`` input
    size gives xyxy pixel boxes ``[A, 4]`` float32; 300 x 300 with the defaults gives
    ``19² * 3 + (10² + 5² + 3² + 2² + 1²) * 6 = 1917``.
    """

    strides: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1 / 3)
    reduce_boxes_in_lowest_layer: bool = True

    def scale_ratios(self, layer: int) -> list[tuple[float, float]]:
        """``(scale, aspect ratio)`` of the boxes of one location of ``layer``, in order."""
        count = len(self.strides)
        scales = [self.min_scale + (self.max_scale - self.min_scale) * k / max(count - 1, 1) for k in range(count)] + [
            1.0
        ]
        scale, next_scale = scales[layer], scales[layer + 1]
        if layer == 0 and self.reduce_boxes_in_lowest_layer:
            return [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        return [(scale, ratio) for ratio in self.aspect_ratios] + [(math.sqrt(scale * next_scale), 1.0)]

    def shapes(self, layer: int, image_size: tuple[int, int]) -> list[tuple[float, float]]:
        """``(width, height)`` in pixels of the boxes of one location of ``layer``."""
        side = min(image_size)
        return [
            (side * scale * math.sqrt(ratio), side * scale / math.sqrt(ratio))
            for scale, ratio in self.scale_ratios(layer)
        ]

    @property
    def boxes_per_location(self) -> tuple[int, ...]:
        """Default boxes per grid cell, one entry per layer (the head's ``n``)."""
        return tuple(len(self.scale_ratios(k)) for k in range(len(self.strides)))

    def __call__(self, image_size: tuple[int, int]) -> np.ndarray:
        return _cached(self, tuple(int(s) for s in image_size))


@lru_cache(maxsize=32)
def _cached(config: RetinaNetAnchors | SSDDefaultBoxes, image_size: tuple[int, int]) -> np.ndarray:
    if isinstance(config, RetinaNetAnchors):
        shapes = [config.shapes(level) for level in range(len(config.strides))]
    else:
        shapes = [config.shapes(layer, image_size) for layer in range(len(config.strides))]
    boxes = np.concatenate(
        [grid_boxes(image_size, stride, level_shapes) for stride, level_shapes in zip(config.strides, shapes)]
    )
    boxes.flags.writeable = False
    return boxes
