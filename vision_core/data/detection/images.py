"""Reading images for detection: full decodes and cheap size look-ups from file headers.

Images are decoded with ``cv2.imdecode`` on the file's bytes (OpenCV 5 rejects truncated
JPEG/PNG files there, where ``cv2.imread`` returns a grey-filled image) and returned as
uint8 [H, W, 3] RGB with the EXIF orientation applied, the frame every box refers to.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class UnreadableImageError(OSError):
    """The file exists but is not a decodable image (corrupt, truncated, or another format)."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode ``path`` to uint8 [H, W, 3] RGB; raises FileNotFoundError or UnreadableImageError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise UnreadableImageError(f"{path}: not a readable image (corrupt, truncated or unsupported)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of the image as :func:`read_image` would return it.

    PNG and JPEG sizes come from the file header (JPEG with its EXIF orientation), so no
    pixels are decoded; other formats are decoded. Raises like :func:`read_image`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        size = _png_size(head) if head.startswith(b"\x89PNG\r\n\x1a\n") else None
        if head.startswith(b"\xff\xd8"):
            size = _jpeg_size(f)
    if size is None:
        height, width = read_image(path).shape[:2]
        return width, height
    return size


def _png_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f) -> tuple[int, int] | None:
    """Walk the JPEG segments up to the frame header; swap sides for EXIF orientations 5-8."""
    f.seek(2)
    orientation = 1
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:
            continue
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            return None
        length = struct.unpack(">H", length_bytes)[0]
        if marker[1] in _SOF_MARKERS:
            segment = f.read(5)
            if len(segment) < 5:
                return None
            height, width = struct.unpack(">HH", segment[1:5])
            return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
        segment = f.read(length - 2)
        if marker[1] == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            orientation = _exif_orientation(segment[6:])
        if marker[1] == 0xDA:  # start of scan without a frame header: not a valid file
            return None


def _exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of IFD0 in an EXIF TIFF block; 1 when absent or unreadable."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", tiff[4:8])
    if offset + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    for i in range(count):
        entry = tiff[offset + 2 + 12 * i : offset + 14 + 12 * i]
        if len(entry) < 12:
            return 1
        tag, _, _, value = struct.unpack(order + "HHIH", entry[:10])
        if tag == 0x0112:
            return value
    return 1
