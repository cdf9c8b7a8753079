"""RGB <-> YCbCr of ITU-R BT.601 ("studio swing"), as MATLAB's ``rgb2ycbcr`` and BasicSR compute it.

Pixels are 0..255 floats (or uint8): ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``, in
[16, 235] for RGB in [0, 255]; Cb and Cr in [16, 240]. Super-resolution papers score
PSNR/SSIM on this Y channel, and ESPCN's paper model works on it.
"""

from __future__ import annotations

import numpy as np

RGB_TO_YCBCR = np.array(
    [[65.481, -37.797, 112.0], [128.553, -74.203, -93.786], [24.966, 112.0, -18.214]], np.float64
)  # columns: Y, Cb, Cr; rows: R, G, B (per unit of 0..1 RGB)
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], np.float64)


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """The BT.601 Y of RGB pixels ``[..., 3]`` (0..255) as float64 ``[...]`` in [16, 235]."""
    image = np.asarray(image, np.float64)
    return image @ RGB_TO_YCBCR[:, 0] / 255.0 + YCBCR_OFFSET[0]


def rgb_to_ycbcr(image: np.ndarray) -> np.ndarray:
    """RGB pixels ``[..., 3]`` (0..255) -> YCbCr float64 ``[..., 3]``."""
    return np.asarray(image, np.float64) @ RGB_TO_YCBCR / 255.0 + YCBCR_OFFSET


def ycbcr_to_rgb(image: np.ndarray) -> np.ndarray:
    """YCbCr ``[..., 3]`` -> RGB float64 ``[..., 3]`` (0..255, unclipped): the inverse of :func:`rgb_to_ycbcr`."""
    return (np.asarray(image, np.float64) - YCBCR_OFFSET) @ np.linalg.inv(RGB_TO_YCBCR / 255.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float pixels rounded and clipped to uint8."""
    return np.clip(np.round(image), 0, 255).astype(np.uint8)
