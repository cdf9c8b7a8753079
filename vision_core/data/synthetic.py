"""Procedurally generated images: coloured shapes on textured backgrounds.

The built-in data of the suite: nothing is downloaded, every image comes from a seed.
Each scene is an RGB uint8 image ``(size, size, 3)`` with objects of the classes in
:data:`SHAPE_CLASSES`; boxes are ``[x_min, y_min, x_max, y_max]`` in pixels (float32).
"""

from __future__ import annotations

import numpy as np

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth colour gradient plus low-frequency texture, like an out-of-focus scene."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    corners = rng.uniform(30, 225, size=(4, 3)).astype(np.float32)
    image = (
        corners[0] * (1 - xx)[..., None] * (1 - yy)[..., None]
        + corners[1] * xx[..., None] * (1 - yy)[..., None]
        + corners[2] * (1 - xx)[..., None] * yy[..., None]
        + corners[3] * xx[..., None] * yy[..., None]
    )
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 2 * np.pi)
        image += rng.uniform(5, 20) * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)[..., None]
    image += rng.normal(0, 4, size=image.shape)
    return image


def _shape_mask(kind: str, size: int, box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    inside = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
    if kind == "circle":
        return ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1.0
    if kind == "square":
        return inside
    if kind == "triangle":
        return inside & (np.abs(xx - cx) <= (yy - y0) / h * w / 2)
    if kind == "cross":
        return inside & ((np.abs(xx - cx) <= w / 6) | (np.abs(yy - cy) <= h / 6))
    raise ValueError(f"unknown shape {kind!r}")


def draw_scene(
    rng: np.random.Generator, size: int, num_objects: int, min_fraction: float = 0.2, max_fraction: float = 0.6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene: ``(image uint8 HxWx3, boxes float32 [N,4] xyxy pixels, classes int32 [N])``."""
    image = _background(rng, size)
    boxes, classes = [], []
    for _ in range(num_objects):
        side = rng.uniform(min_fraction, max_fraction) * size
        aspect = rng.uniform(0.75, 1.33)
        w, h = side * aspect**0.5, side / aspect**0.5
        x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        box = np.array([x0, y0, x0 + w, y0 + h], np.float32)
        label = int(rng.integers(len(SHAPE_CLASSES)))
        colour = rng.uniform(0, 255, size=3)
        image[_shape_mask(SHAPE_CLASSES[label], size, box)] = colour
        boxes.append(box)
        classes.append(label)
    return (
        np.clip(image, 0, 255).astype(np.uint8),
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(classes, np.int32),
    )


def segmentation_scene(
    rng: np.random.Generator, size: int, num_objects: int, min_fraction: float = 0.15, max_fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """One scene and its label map: ``(image uint8 HxWx3, mask uint8 HxW)``.

    The mask holds 0 for the background and ``1 + class`` (an index into :data:`SHAPE_CLASSES`)
    where a shape is visible; a shape drawn later covers the earlier ones in both.
    """
    image = _background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(num_objects):
        side = rng.uniform(min_fraction, max_fraction) * size
        aspect = rng.uniform(0.75, 1.33)
        w, h = side * aspect**0.5, side / aspect**0.5
        x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        label = int(rng.integers(len(SHAPE_CLASSES)))
        inside = _shape_mask(SHAPE_CLASSES[label], size, np.array([x0, y0, x0 + w, y0 + h], np.float32))
        image[inside] = rng.uniform(0, 255, size=3)
        mask[inside] = label + 1
    return np.clip(image, 0, 255).astype(np.uint8), mask


def classification_set(count: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` one-object scenes: ``(images uint8 [count, size, size, 3], labels int32 [count])``."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), np.uint8)
    labels = np.empty((count,), np.int32)
    for i in range(count):
        images[i], _, classes = draw_scene(rng, size, 1, min_fraction=0.4, max_fraction=0.8)
        labels[i] = classes[0]
    return images, labels


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 in [-1, 1], the input the suite's backbones take in tests and demos."""
    return images.astype(np.float32) / 127.5 - 1.0
