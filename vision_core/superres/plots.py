"""The side-by-side crop gallery of a super-resolution evaluation: bicubic | model | ground truth.

One row per image: the same crop (the ``crop`` x ``crop`` high-resolution window with the most
edge energy in the ground truth) of the bicubic upscaling, the model's output and the ground
truth, each labelled with its PSNR (Y). A Y model's output is shown in colour with bicubic Cb/Cr.
Written as one PNG with OpenCV, atomically.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vision_core.data.superres.colour import rgb_to_ycbcr, to_uint8, ycbcr_to_rgb
from vision_core.storage.atomic import write_atomic

LABEL_HEIGHT = 22


def with_luma(y: np.ndarray, colour_source: np.ndarray) -> np.ndarray:
    """uint8 RGB whose BT.601 Y is ``y`` (``[H, W]`` or ``[H, W, 1]``) and Cb/Cr are ``colour_source``'s (RGB)."""
    ycbcr = rgb_to_ycbcr(colour_source)
    ycbcr[..., 0] = np.asarray(y, np.float64).reshape(ycbcr.shape[:2])
    return to_uint8(ycbcr_to_rgb(ycbcr))


def busiest_window(image: np.ndarray, crop: int) -> tuple[int, int]:
    """``(top, left)`` of the ``crop`` square of ``image`` (uint8 RGB) with the largest gradient energy."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    crop_h, crop_w = min(crop, image.shape[0]), min(crop, image.shape[1])
    summed = cv2.boxFilter(energy, -1, (crop_w, crop_h), normalize=False, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    valid = summed[: image.shape[0] - crop_h + 1, : image.shape[1] - crop_w + 1]
    top, left = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(top), int(left)


def _labelled(tile: np.ndarray, text: str) -> np.ndarray:
    label = np.full((LABEL_HEIGHT, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(label, text, (3, LABEL_HEIGHT - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([label, tile], 0)


def plot_gallery(rows: list[dict], path: str | Path, crop: int = 96, zoom: int = 2) -> Path:
    """Write the gallery of ``rows`` to ``path`` (PNG); returns the path.

    Each row: ``bicubic``, ``model``, ``truth`` (uint8 RGB of one size), ``bicubic_psnr``, ``psnr``.
    Crops are enlarged ``zoom`` times by pixel replication, so the pixels stay visible.
    """
    if not rows:
        raise ValueError("no images for the gallery")
    lines = []
    for row in rows:
        top, left = busiest_window(row["truth"], crop)
        tiles = []
        for key, text in (
            ("bicubic", f"bicubic {row['bicubic_psnr']:.2f} dB"),
            ("model", f"model {row['psnr']:.2f} dB"),
            ("truth", "ground truth"),
        ):
            tile = row[key][top : top + crop, left : left + crop]
            tile = cv2.resize(tile, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
            tiles.append(_labelled(tile, text))
        lines.append(np.concatenate(tiles, 1))
    width = max(line.shape[1] for line in lines)
    padded = [np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    canvas = np.concatenate(padded)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("OpenCV cannot encode PNG images")
    return write_atomic(path, encoded.tobytes())
