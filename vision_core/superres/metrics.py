"""PSNR and SSIM as super-resolution papers and BasicSR compute them.

Both take two images of 0..255 pixels (uint8 or float), ``[H, W]`` / ``[H, W, 1]`` (already Y) or
``[H, W, 3]`` RGB, and by default score the ITU-R BT.601 Y channel (``16 + (65.481 R + 128.553 G +
24.966 B) / 255``, unrounded, :func:`vision_core.data.superres.colour.rgb_to_y`) after cropping
``crop_border`` pixels (the scale) from every side, in float64:

* PSNR = ``10 log10(255^2 / MSE)`` (``inf`` for identical images);
* SSIM (Wang et al. 2004) with an 11x11 Gaussian window of sigma 1.5, ``C1 = (0.01 * 255)^2``,
  ``C2 = (0.03 * 255)^2``, over the "valid" positions only (the window inside the image), the mean of
  the SSIM map; with ``y_channel=False`` the mean over the channels' SSIMs.
"""

from __future__ import annotations

import cv2
import numpy as np

from vision_core.data.superres.colour import rgb_to_y

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2


def _prepare(image: np.ndarray, crop_border: int, y_channel: bool) -> np.ndarray:
    image = np.asarray(image, np.float64)
    if image.ndim == 2:
        image = image[..., None]
    if y_channel and image.shape[-1] == 3:
        image = rgb_to_y(image)[..., None]
    if crop_border:
        image = image[crop_border:-crop_border, crop_border:-crop_border]
    return image


def _pair(image: np.ndarray, reference: np.ndarray, crop_border: int, y_channel: bool):
    if np.shape(image) != np.shape(reference):
        raise ValueError(f"image shapes differ: {np.shape(image)} and {np.shape(reference)}")
    a, b = _prepare(image, crop_border, y_channel), _prepare(reference, crop_border, y_channel)
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"nothing left of a {np.shape(image)} image after cropping {crop_border} pixels per side")
    return a, b


def psnr(image: np.ndarray, reference: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB of ``image`` against ``reference`` (see the module docstring)."""
    a, b = _pair(image, reference, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA)
    window = kernel @ kernel.T
    half = SSIM_WINDOW // 2

    def blur(x):  # the filtered values whose window lies inside the image
        return cv2.filter2D(x, -1, window)[half:-half, half:-half]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    covariance = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + SSIM_C1) * (2 * covariance + SSIM_C2)) / (
        (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
    )
    return float(ssim_map.mean())


def ssim(image: np.ndarray, reference: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """SSIM of ``image`` against ``reference`` (see the module docstring); needs 11x11 pixels after the crop."""
    a, b = _pair(image, reference, crop_border, y_channel)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after the crop, got {a.shape[:2]}")
    return float(np.mean([_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[-1])]))
