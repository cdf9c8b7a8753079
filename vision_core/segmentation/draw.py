"""Colour drawings of label maps: a palette, overlays on images, and the image / truth / prediction gallery.

Colours are RGB uint8. :func:`class_colors` gives the dataset's colours when it has them, else
the Pascal VOC palette (bit-interleaved, distinct for 256 classes). Ignored pixels are drawn white.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from vision_core.storage.atomic import write_atomic

IGNORE_COLOUR = (255, 255, 255)


def class_colors(num_classes: int, colors: Sequence[Sequence[int]] = ()) -> np.ndarray:
    """uint8 ``[num_classes, 3]`` RGB: ``colors`` when given, else the Pascal VOC palette."""
    if colors:
        return np.asarray(colors, np.uint8).reshape(num_classes, 3)
    palette = np.zeros((num_classes, 3), np.uint8)
    for index in range(num_classes):
        label, shift = index, 7
        while label:
            for channel in range(3):
                palette[index, channel] |= ((label >> channel) & 1) << shift
            label >>= 3
            shift -= 1
    return palette


def colorize(class_map: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` of an int label map; values outside the palette (the ignore index) are white."""
    class_map = np.asarray(class_map)
    known = (class_map >= 0) & (class_map < len(colors))
    out = np.empty((*class_map.shape, 3), np.uint8)
    out[:] = IGNORE_COLOUR
    out[known] = colors[class_map[known]]
    return out


def overlay(image: np.ndarray, class_map: np.ndarray, colors: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``image`` (uint8 RGB) blended with the colours of ``class_map`` (same height and width)."""
    return cv2.addWeighted(image, 1.0 - alpha, colorize(class_map, colors), alpha, 0.0)


def write_gallery(
    rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    colors: np.ndarray,
    path: str | os.PathLike,
    tile: int = 160,
) -> Path:
    """A PNG grid, one row per ``(image uint8 RGB, truth map, predicted map)``: the image, its truth overlay and
    the prediction overlay, each stretched to ``tile`` pixels square. Returns the path (written atomically)."""
    if not rows:
        raise ValueError("no images for the gallery")
    lines = []
    for image, truth, predicted in rows:
        tiles = [image, overlay(image, truth, colors), overlay(image, predicted, colors)]
        lines.append(np.concatenate([cv2.resize(t, (tile, tile), interpolation=cv2.INTER_NEAREST) for t in tiles], 1))
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.concatenate(lines, 0), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("OpenCV cannot encode PNG images")
    return write_atomic(path, encoded.tobytes())
