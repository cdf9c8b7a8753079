"""The built-in super-resolution data: generated high-resolution images written as PNG folders.

Each image is drawn from its own seed (``(split seed, index)``) with what super-resolution
has to restore: sharp straight and curved edges (filled polygons and ellipses), text-like
strokes (OpenCV's Hershey fonts, antialiased), smooth gradients, and textures (stripes,
checkerboards and smoothed noise at several frequencies). Nothing is downloaded.

:func:`write_demo_dataset` writes ``root/{train,val}/<index:04d>.png`` (RGB, ``size x size``,
a multiple of 12 so x2, x3 and x4 all divide it) and ``root/dataset.json``; the low-resolution
inputs are made from them by MATLAB's bicubic (:mod:`vision_core.data.superres.imresize`).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vision_core.data.generated import generated_dataset

GENERATOR_VERSION = 1
FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(0, 255, 3))


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    """A bilinear blend of four corner colours."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    corners = rng.uniform(20, 235, size=(4, 3)).astype(np.float32)
    weights = np.stack([(1 - xx) * (1 - yy), xx * (1 - yy), (1 - xx) * yy, xx * yy], -1)
    return weights @ corners


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A grey texture in [-1, 1]: stripes, a checkerboard or smoothed noise, at a random frequency."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        angle, period = rng.uniform(0, np.pi), rng.uniform(3, 24)
        return np.sign(np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period))
    if kind == 1:
        cell = int(rng.integers(3, 16))
        return ((xx // cell + yy // cell) % 2) * 2.0 - 1.0
    noise = rng.normal(0, 1, (size, size)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), rng.uniform(0.6, 3.0))
    return smooth / (np.abs(smooth).max() + 1e-6)


def _mask_of(size: int, draw, *args) -> np.ndarray:
    """The [0, 1] coverage ``[size, size, 1]`` of ``draw(canvas, *args)`` (an OpenCV drawing call, value 255)."""
    mask = np.zeros((size, size), np.uint8)
    draw(mask, *args)
    return mask.astype(np.float32)[..., None] / 255.0


def demo_image(size: int, seed: int | tuple[int, ...]) -> np.ndarray:
    """One generated RGB uint8 image ``[size, size, 3]``; the same ``seed`` gives the same pixels."""
    rng = np.random.default_rng(seed)
    image = _gradient(rng, size)
    for _ in range(rng.integers(1, 4)):  # textured regions
        corner, opposite = (tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(2))
        region = _mask_of(size, cv2.rectangle, corner, opposite, 255, -1)
        contrast = rng.uniform(15, 70)
        image += region * contrast * _texture(rng, size)[..., None] * np.asarray(_colour(rng), np.float32) / 255.0
    for _ in range(rng.integers(2, 7)):  # shapes with sharp edges
        colour = np.asarray(_colour(rng), np.float32)
        if rng.random() < 0.5:
            points = rng.integers(-size // 4, size + size // 4, (int(rng.integers(3, 7)), 2)).astype(np.int32)
            mask = _mask_of(size, cv2.fillPoly, [points], 255, cv2.LINE_AA)
        else:
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            axes = tuple(int(v) for v in rng.integers(4, size // 3, 2))
            angle = float(rng.uniform(0, 180))
            mask = _mask_of(size, cv2.ellipse, centre, axes, angle, 0, 360, 255, -1, cv2.LINE_AA)
        image = image * (1 - mask) + colour * mask
    for _ in range(rng.integers(2, 6)):  # text-like strokes
        text = "".join(rng.choice(list(LETTERS), int(rng.integers(3, 10))))
        font = int(rng.choice(FONTS))
        scale = float(rng.uniform(0.4, 1.6))
        thickness = int(rng.integers(1, 3))
        origin = (int(rng.integers(-size // 8, size - size // 4)), int(rng.integers(size // 10, size)))
        colour = np.asarray(_colour(rng), np.float32)
        mask = _mask_of(size, cv2.putText, text, origin, font, scale, 255, thickness, cv2.LINE_AA)
        image = image * (1 - mask) + colour * mask
    image += rng.normal(0, rng.uniform(0, 2.5), image.shape)  # sensor-like grain
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def write_demo_dataset(
    root: str | os.PathLike,
    train: int = 240,
    val: int = 24,
    size: int = 240,
    train_seed: int = 36,
    val_seed: int = 936,
    *,
    progress: bool = True,
) -> Path:
    """Write the demo dataset to ``root`` (see the module docstring) and return ``root`` (absolute).

    Split ``s`` holds ``demo_image(size, (<s>_seed, index))`` for each index. The folder is written
    beside ``root`` and renamed into place, so a crash never leaves half a dataset. A ``root``
    that already holds the dataset of the same settings is reused untouched; one holding
    anything else is an error naming it.
    """
    if size % 12:
        raise ValueError(f"demo image size {size} must be a multiple of 12 (so x2, x3 and x4 divide it)")
    root = Path(os.path.abspath(root))
    settings = {
        "generator": __name__,
        "version": GENERATOR_VERSION,
        "size": size,
        "splits": {"train": {"images": train, "seed": train_seed}, "val": {"images": val, "seed": val_seed}},
    }

    def write(staging: Path) -> None:
        for split, spec in settings["splits"].items():
            folder = staging / split
            folder.mkdir()
            for index in tqdm(range(spec["images"]), desc=f"write demo {split}", unit="image", disable=not progress):
                image = demo_image(size, (spec["seed"], index))
                ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                if not ok:
                    raise ValueError("OpenCV cannot encode PNG images")
                encoded.tofile(folder / f"{index:04d}.png")

    return generated_dataset(root, settings, write, "super-resolution demo")
