"""Reading segmentation masks as class indices, with Pillow.

A mask is a single-channel image whose values are class indices: 8-bit grey (``L``), palette
(``P``, read as its indices, not its colours: VOC's ``SegmentationClass`` PNGs) or 16-bit grey.
A colour (RGB/RGBA) mask cannot be read as indices without a colour table, and is an error
(:class:`RGBMaskError`) naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vision_core.data.detection.images import UnreadableImageError

INDEX_MODES = ("L", "P", "I;16", "I", "1")


class RGBMaskError(ValueError):
    """A colour mask where an index mask is expected."""


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """The class indices of the mask at ``path``: int32 [H, W].

    Raises FileNotFoundError, :class:`UnreadableImageError` (not decodable) or :class:`RGBMaskError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask not found")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode not in INDEX_MODES:
                raise RGBMaskError(
                    f"{path}: a {mode} (colour) mask; expected class indices (8-bit grey or palette PNG)"
                )
            return np.asarray(image, dtype=np.int32)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise UnreadableImageError(f"{path}: not a readable mask ({error})") from None


def map_labels(mask: np.ndarray, label_map: Sequence[int] | None) -> np.ndarray:
    """``mask`` with each stored value ``v < len(label_map)`` replaced by ``label_map[v]`` (None: unchanged)."""
    if label_map is None:
        return mask
    table = np.asarray(label_map, np.int32)
    inside = (mask >= 0) & (mask < len(table))
    return np.where(inside, table[np.clip(mask, 0, len(table) - 1)], mask)


def mask_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of a mask from its header (Pillow reads no pixels)."""
    with Image.open(path) as image:
        return image.size
