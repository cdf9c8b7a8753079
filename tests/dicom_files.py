"""Small DICOM files written with pydicom for the tests (no downloads): one helper, every attribute explicit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def write_dicom(path: Path, pixels: np.ndarray | None, bits_stored: int | None = None, **attributes) -> Path:
    """Write ``pixels`` (uint8/uint16/int16 [H, W], [frames, H, W] or uint8 [H, W, 3]) as a DICOM file.

    ``bits_stored`` defaults to the dtype's width; ``attributes`` are set on the dataset by keyword
    (``RescaleSlope=2``, ``WindowCenter=40``, ``PhotometricInterpretation="MONOCHROME1"``, ...).
    ``pixels=None`` writes a header-only file (no PixelData).
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.PatientID = "TEST"
    dataset.Modality = "OT"
    if pixels is not None:
        pixels = np.asarray(pixels)
        colour = pixels.ndim == 3 and pixels.shape[-1] == 3 and pixels.dtype == np.uint8
        interpretation = "RGB" if colour else attributes.pop("PhotometricInterpretation", "MONOCHROME2")
        dataset.set_pixel_data(pixels, interpretation, bits_stored or pixels.dtype.itemsize * 8)
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path
