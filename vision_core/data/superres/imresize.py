"""MATLAB's bicubic ``imresize`` in numpy, the downscaling every super-resolution paper's numbers use.

The definition is BasicSR's ``imresize`` (``basicsr/utils/matlab_functions.py``), which
reproduces MATLAB's: Keys' cubic kernel with ``a = -0.5``; when shrinking, the kernel is
stretched by ``1 / scale`` and its weights scaled by ``scale`` (antialiasing); output pixel
``x`` (1-based) samples input position ``u = x / scale + 0.5 * (1 - 1 / scale)``; each row
of weights is normalised to sum 1; positions outside the image mirror symmetrically
(``... 2 1 | 1 2 3 ... n | n n-1 ...``). Height is resized first, then width, in float64
with no rounding in between. A uint8 image comes back rounded and clipped to uint8 (as
MATLAB returns the input's class); a float image comes back float32, unclipped.

Each axis is one ``(out, in)`` weight matrix (:func:`resize_matrix`), so the resize of an
image is two matrix products.
"""

from __future__ import annotations

import math

import numpy as np

KERNEL_WIDTH = 4.0  # Keys' cubic kernel covers [-2, 2]


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``bicubic``)."""
    absx = np.abs(x)
    absx2, absx3 = absx**2, absx**3
    near = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2))
    return near + far


def resize_matrix(in_length: int, out_length: int, scale: float, antialiasing: bool = True) -> np.ndarray:
    """The ``(out_length, in_length)`` float64 matrix of one axis' bicubic resize by ``scale``.

    Row ``i`` holds the weights of output pixel ``i`` on the input pixels, with MATLAB's
    symmetric mirroring folded in (a mirrored position adds its weight to the pixel it mirrors).
    """
    if in_length < 1 or out_length < 1:
        raise ValueError(f"cannot resize {in_length} pixels to {out_length}")
    shrink = scale < 1 and antialiasing
    width = KERNEL_WIDTH / scale if shrink else KERNEL_WIDTH
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based input positions
    distance = u[:, None] - indices
    weights = scale * cubic(distance * scale) if shrink else cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    period = 2 * in_length  # 1..n then n..1 repeats
    mirrored = np.mod(indices - 1, period)
    mirrored = np.where(mirrored < in_length, mirrored, period - 1 - mirrored).astype(np.int64)
    matrix = np.zeros((out_length, in_length), np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_length), taps), mirrored.ravel()), weights.ravel())
    return matrix


def output_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """MATLAB's output size: ``ceil(side * scale)`` on each axis."""
    return math.ceil(height * scale), math.ceil(width * scale)


def imresize(image: np.ndarray, scale: float, antialiasing: bool = True) -> np.ndarray:
    """``image`` (``[H, W]`` or ``[H, W, C]``, uint8 or float) resized by ``scale`` as MATLAB's ``imresize``.

    ``scale < 1`` shrinks (``1 / 3`` for a x3 low-resolution input), ``scale > 1`` enlarges;
    the output is ``ceil(H * scale) x ceil(W * scale)``. uint8 in -> uint8 out (rounded,
    clipped), float in -> float32 out.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an image [H, W] or [H, W, C], got shape {image.shape}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    height, width = image.shape[:2]
    out_height, out_width = output_size(height, width, scale)
    rows = resize_matrix(height, out_height, scale, antialiasing)
    columns = resize_matrix(width, out_width, scale, antialiasing)
    pixels = image.astype(np.float64)
    resized = np.einsum("oh,hw...->ow...", rows, pixels)
    resized = np.einsum("pw,ow...->op...", columns, resized)
    if image.dtype == np.uint8:
        return np.clip(np.round(resized), 0, 255).astype(np.uint8)
    return resized.astype(np.float32)


def bicubic_downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """The low-resolution input of a ``factor`` x super-resolution pair: ``imresize(image, 1 / factor)``."""
    return imresize(image, 1 / factor)


def bicubic_upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` enlarged ``factor`` times by MATLAB's bicubic (the baseline every SR table reports)."""
    return imresize(image, factor)
