"""Read a DICOM file's pixels as an 8-bit image, the way a radiologist's viewer first shows it.

:func:`read_dicom` (pydicom) takes the stored values and applies, in order:

1. the modality LUT: ``RescaleSlope * stored + RescaleIntercept`` (Hounsfield units for CT), or
   the file's Modality LUT Sequence (pydicom's ``apply_modality_lut``);
2. the VOI transform to 0..255: a ``window=(centre, width)`` given by the caller wins; else the
   file's VOI LUT Sequence (its output scaled by ``2^bits - 1`` of the LUT descriptor); else the
   file's first ``WindowCenter``/``WindowWidth``; else the image's own minimum..maximum. A window
   is DICOM's linear function (PS3.3 C.11.2.1.2.1): values at or below
   ``c - 0.5 - (w - 1) / 2`` give 0, above ``c - 0.5 + (w - 1) / 2`` give 255, between them
   ``((x - (c - 0.5)) / (w - 1) + 0.5) * 255``, rounded half to even;
3. ``MONOCHROME1`` (higher values darker) is inverted, ``255 - y``, so bone is bright in every file.

Colour files (``SamplesPerPixel`` 3, 8 bits) are returned as RGB without a VOI transform.
Multi-frame files give their middle frame (``frame`` picks another). 8-, 12- and 16-bit, signed
or unsigned stored values all go through the same float arithmetic. Errors are
:class:`~vision_core.data.detection.images.UnreadableImageError` (an ``OSError``) naming the file
and the problem: not DICOM, no pixel data, pixel data pydicom cannot decode.
"""

from __future__ import annotations

import os

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from vision_core.data.detection.images import UnreadableImageError

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def window_to_uint8(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """DICOM's linear window (module docstring) of float ``values`` to uint8."""
    values = np.asarray(values, np.float64)
    low, high = centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2
    scaled = ((values - (centre - 0.5)) / max(width - 1, 1e-12) + 0.5) * 255
    scaled = np.where(values <= low, 0.0, np.where(values > high, 255.0, scaled))
    return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)


def _first(value) -> float:
    """The first of a possibly multi-valued DICOM number (WindowCenter may hold several)."""
    return float(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)


def read_dicom(
    path: str | os.PathLike, window: tuple[float, float] | None = None, frame: int | None = None
) -> np.ndarray:
    """The pixels of the DICOM file ``path`` as uint8 ``[H, W, 1]`` (grey) or ``[H, W, 3]`` (RGB).

    ``window``: ``(centre, width)`` in modality units, instead of the file's VOI; ``frame``: the frame of
    a multi-frame file (default: the middle one). Raises ``FileNotFoundError`` for a missing file and
    ``UnreadableImageError`` naming the file and the problem otherwise.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: file not found")
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        raise UnreadableImageError(f"{path}: not a readable DICOM file ({error})") from None
    if not any(keyword in dataset for keyword in PIXEL_KEYWORDS):
        raise UnreadableImageError(f"{path}: DICOM without pixel data")
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for truncated or undecodable pixel data
        raise UnreadableImageError(f"{path}: cannot decode the DICOM pixel data ({error})") from None
    samples = int(dataset.get("SamplesPerPixel", 1))
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        index = frames // 2 if frame is None else frame
        if not 0 <= index < frames:
            raise UnreadableImageError(f"{path}: frame {index} asked of {frames} frames")
        pixels = pixels[index]
    if samples == 3:
        if pixels.dtype != np.uint8:
            raise UnreadableImageError(f"{path}: colour DICOM with {pixels.dtype} samples (8-bit expected)")
        return np.ascontiguousarray(pixels)
    values = np.asarray(apply_modality_lut(pixels, dataset), np.float64)
    if window is not None:
        image = window_to_uint8(values, *window)
    elif "VOILUTSequence" in dataset:
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        lut = np.asarray(apply_voi_lut(values.astype(np.int64), dataset, prefer_lut=True), np.float64)
        image = np.round(np.clip(lut / (2**bits - 1), 0, 1) * 255).astype(np.uint8)
    elif "WindowCenter" in dataset and "WindowWidth" in dataset:
        image = window_to_uint8(values, _first(dataset.WindowCenter), _first(dataset.WindowWidth))
    else:
        low, high = float(values.min()), float(values.max())
        scale = 255 / (high - low) if high > low else 0.0
        image = np.round((values - low) * scale).astype(np.uint8)
    if dataset.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        image = 255 - image
    return image[..., None]
