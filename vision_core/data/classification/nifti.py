"""Read a NIfTI volume (``.nii``, ``.nii.gz``) as the 8-bit volume a volume classifier takes.

:func:`read_nifti` (nibabel) applies, in order:

1. **orientation**: the image is reoriented to the closest canonical RAS+ orientation
   (``nibabel.as_closest_canonical``): array axes ``(x, y, z)`` run left->right, posterior->anterior,
   inferior->superior whatever the file stored, so every volume's slices are axial and in one order;
   values are the scaled ones (``scl_slope`` / ``scl_inter`` applied), non-finite ones set to 0;
2. **intensity**, per volume: the values are clipped to the ``percentiles`` (default 1st and 99th) of the
   volume's nonzero voxels (the background of a skull-stripped scan is 0 and would otherwise set the low
   end) and mapped linearly to 0..255 (a volume whose two percentiles are equal gives 0 everywhere);
3. **shape**: resampled to ``(H, W, D)`` with trilinear interpolation on voxel centres (the half-pixel
   convention of ``tf.image.resize``'s bilinear, applied along each axis in turn; edges repeat), so
   anisotropic voxels become the fixed grid the model takes (voxel spacing is not kept);
4. rounded half to even to uint8, as a DICOM window is: the same 8-bit input, hence the same
   ``(v - 127.5) / 127.5`` normalisation and uint8 TFLite input, as the app's 2D images.

The result is uint8 ``[H, W, D]``: slices last, as the model input ``[B, H, W, D]`` holds them
(:mod:`vision_core.backbones.resnet3d`). A 4D file whose fourth axis has one frame counts as 3D.
Errors name the file: ``FileNotFoundError`` for a missing one, :class:`WrongDimensionsError` for an
image that is not a 3D volume, :class:`~vision_core.data.detection.images.UnreadableImageError` (an
``OSError``) for the rest (not NIfTI, corrupt or truncated data).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel
import numpy as np
from nibabel.filebasedimages import ImageFileError

from vision_core.data.detection.images import UnreadableImageError

PERCENTILES = (1.0, 99.0)


class WrongDimensionsError(UnreadableImageError):
    """The file is a readable NIfTI image but not a 3D volume (a 2D image, or several volumes)."""


def volume_array(path: str | os.PathLike) -> np.ndarray:
    """The float32 values ``[x, y, z]`` of a NIfTI file in its closest canonical RAS+ orientation (step 1)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        image = nibabel.load(path)
    except (ImageFileError, OSError, ValueError, EOFError) as error:
        raise UnreadableImageError(f"{path}: not a readable NIfTI file ({error})") from None
    shape = tuple(int(n) for n in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        image = image.slicer[..., 0]
    elif len(shape) != 3:
        raise WrongDimensionsError(
            f"{path}: {len(shape)} dimensions ({'x'.join(map(str, shape))}); a volume has 3 "
            "(a 4th of one frame allowed)"
        )
    try:
        values = np.asarray(nibabel.as_closest_canonical(image).get_fdata(dtype=np.float32))
    except Exception as error:  # noqa: BLE001 (gzip, zlib, numpy and nibabel each raise their own on bad data)
        raise UnreadableImageError(f"{path}: voxel data cannot be read ({type(error).__name__}: {error})") from None
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def intensity_to_uint8_range(values: np.ndarray, percentiles: Sequence[float] = PERCENTILES) -> np.ndarray:
    """float32 ``values`` clipped to the ``percentiles`` of their nonzero voxels and mapped to 0..255 (step 2)."""
    values = np.asarray(values, np.float32)
    nonzero = values[values != 0]
    if not nonzero.size:
        return np.zeros_like(values)
    low, high = np.percentile(nonzero, percentiles)
    if high <= low:
        return np.zeros_like(values)
    return (np.clip(values, low, high) - np.float32(low)) * np.float32(255.0 / (high - low))


def resample_linear(values: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``values`` resampled to ``shape`` (same number of axes) by linear interpolation along each axis on voxel
    centres: output index ``i`` reads input position ``(i + 0.5) * n_in / n_out - 0.5``, clamped to the edges."""
    out = np.asarray(values, np.float32)
    for axis, size in enumerate(shape):
        length = out.shape[axis]
        if length == size:
            continue
        position = np.clip((np.arange(size) + 0.5) * (length / size) - 0.5, 0, length - 1)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, length - 1)
        weight = (position - below).astype(np.float32)
        weight = weight.reshape([-1 if a == axis else 1 for a in range(out.ndim)])
        out = np.take(out, below, axis=axis) * (1 - weight) + np.take(out, above, axis=axis) * weight
    return out


def read_nifti(
    path: str | os.PathLike,
    volume_shape: Sequence[int] | None = None,
    percentiles: Sequence[float] = PERCENTILES,
) -> np.ndarray:
    """uint8 ``[H, W, D]`` of a NIfTI file (module docstring), resampled to ``volume_shape`` ``(D, H, W)``
    (None: the file's own shape after reorientation)."""
    values = intensity_to_uint8_range(volume_array(path), percentiles)
    if volume_shape is not None:
        depth, height, width = (int(n) for n in volume_shape)
        values = resample_linear(values, (height, width, depth))
    return np.round(values).astype(np.uint8)


def normalised_volume(
    path: str | os.PathLike, volume_shape: Sequence[int], mean: float = 127.5, std: float = 127.5
) -> np.ndarray:
    """:func:`read_nifti` as the model takes it, float32 ``[H, W, D]`` computed ``v / std - mean / std`` as the
    volume input pipeline computes it (:mod:`vision_core.data.classification.volume_pipeline`)."""
    return read_nifti(path, volume_shape).astype(np.float32) / np.float32(std) - np.float32(mean / std)


def parse_volume_shape(text: str) -> tuple[int, int, int]:
    """``"D,H,W"`` -> ``(D, H, W)``; ValueError unless three positive integers."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected 'D,H,W' (slices, height, width; e.g. 16,64,64), got {text!r}")
    return shape
