"""The built-in volume demo: generated head MR-like volumes whose 3D structure sets the class.

Each volume is a head in miniature: zero background (skull-stripped), an ellipsoid of tissue with smooth
intensity variation and noise, and one bright structure inside it. The structure's kind is the class, and
only its extent *across* slices tells two of the kinds apart, so a model must look in 3D:

| class | structure |
|---|---|
| ``sphere`` | a ball, 6-9 mm radius (on the few slices it crosses: a disc) |
| ``vertical_rod`` | a cylinder along the superior axis, 4-6 mm radius, 32-48 mm long (on each slice: a disc) |
| ``horizontal_rod`` | a cylinder in the axial plane, 4-6 mm radius, 24-40 mm long, any direction (a bar) |

Voxels are 1 x 1 x ``slice_mm`` mm (anisotropic, as clinical MR), values int16 in arbitrary scanner units
(a random gain per volume, so intensity normalisation matters). Every file is stored in one of a few
orientations (RAS, LAS, LPS, and PIR, whose axes are permuted: its array is ``[y, z, x]``), with the
affine that says so, so a reader that does not reorient to one axis order sees flipped or transposed
heads. :func:`write_volume_dataset` writes ``root/volumes/<patient>.nii.gz`` and ``root/labels.csv``
(``path,label,patient_id``, one volume per patient) atomically through
:func:`vision_core.data.generated.generated_dataset`; everything is drawn from one seeded generator per
volume, so the files are the same on every machine.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import nibabel
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform
from tqdm import tqdm

from vision_core.data.generated import generated_dataset

VOLUME_CLASSES = ("sphere", "vertical_rod", "horizontal_rod")
LABELS_FILE = "labels.csv"
GENERATOR_VERSION = 1
STORED_ORIENTATIONS = (("R", "A", "S"), ("L", "A", "S"), ("L", "P", "S"), ("P", "I", "R"))
SCANNER_GAIN = (300.0, 1500.0)  # tissue value range in stored units, drawn per volume


def draw_volume(rng: np.random.Generator, shape: tuple[int, int, int], slice_mm: float, kind: str) -> np.ndarray:
    """One head volume float32 ``[x, y, z]`` (RAS+ array order) of ``shape`` with a structure of ``kind``
    (one of :data:`VOLUME_CLASSES`); values about 0..1.3 (tissue ~0.4-0.6, the structure ~1), 0 outside the head."""
    nx, ny, nz = shape
    x, y, z = np.meshgrid(
        np.arange(nx, dtype=np.float32),
        np.arange(ny, dtype=np.float32),
        np.arange(nz, dtype=np.float32) * slice_mm,
        indexing="ij",
    )
    centre = np.array([nx / 2, ny / 2, nz * slice_mm / 2]) + rng.normal(0, [2.0, 2.0, slice_mm / 2])
    axes = np.array([0.42 * nx, 0.46 * ny, 0.62 * nz * slice_mm]) * rng.uniform(0.9, 1.05, 3)
    head = ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + ((z - centre[2]) / axes[2]) ** 2
    inside = head <= 1
    tissue = 0.5 + 0.08 * np.sin(x / rng.uniform(4, 8) + rng.uniform(0, 6)) * np.cos(y / rng.uniform(4, 8))
    tissue -= 0.1 * head  # darker towards the edge
    # the structure, kept well inside the head: a centre within half its semi-axes
    where = centre + rng.uniform(-0.4, 0.4, 3) * axes * np.array([1, 1, 0.3])
    if kind == "sphere":
        radius = rng.uniform(6, 9)
        structure = (x - where[0]) ** 2 + (y - where[1]) ** 2 + (z - where[2]) ** 2 <= radius**2
    elif kind == "vertical_rod":
        radius, half = rng.uniform(4, 6), rng.uniform(16, 24)
        structure = ((x - where[0]) ** 2 + (y - where[1]) ** 2 <= radius**2) & (np.abs(z - where[2]) <= half)
    elif kind == "horizontal_rod":
        radius, half, angle = rng.uniform(4, 6), rng.uniform(12, 20), rng.uniform(0, np.pi)
        along = (x - where[0]) * np.cos(angle) + (y - where[1]) * np.sin(angle)
        across = -(x - where[0]) * np.sin(angle) + (y - where[1]) * np.cos(angle)
        structure = (across**2 + (z - where[2]) ** 2 <= radius**2) & (np.abs(along) <= half)
    else:
        raise ValueError(f"unknown structure {kind!r}: expected one of {', '.join(VOLUME_CLASSES)}")
    values = np.where(structure, rng.uniform(0.9, 1.1), tissue)
    values = values + rng.normal(0, 0.06, shape)
    return np.where(inside, np.clip(values, 0.02, None), 0).astype(np.float32)


def stored_image(values: np.ndarray, slice_mm: float, axcodes: tuple[str, str, str], gain: float):
    """A ``Nifti1Image`` holding RAS+ ``values`` ``[x, y, z]`` (voxels 1 x 1 x ``slice_mm`` mm) in the array
    orientation ``axcodes``, as int16 ``values * gain``, with the affine that maps it back to RAS+."""
    ras_affine = np.diag([1.0, 1.0, slice_mm, 1.0])
    ras_affine[:3, 3] = -np.array(values.shape) * np.array([1.0, 1.0, slice_mm]) / 2
    transform = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(axcodes))
    data = apply_orientation(values, transform)
    affine = ras_affine @ inv_ornt_aff(transform, values.shape)
    image = nibabel.Nifti1Image(np.round(data * gain).astype(np.int16), affine)
    image.header.set_xyzt_units("mm")
    return image


def write_volume_dataset(
    root: str | os.PathLike,
    patients: int = 300,
    shape: tuple[int, int, int] = (16, 64, 64),
    slice_mm: float = 4.0,
    seed: int = 2027,
    *,
    progress: bool = True,
) -> Path:
    """Write the volume demo (``patients`` volumes of ``shape`` ``(D, H, W)``, classes in turn) to ``root``;
    returns ``root/labels.csv``. A ``root`` holding the demo of the same settings is reused untouched; one
    holding anything else is an error naming it."""
    root = Path(os.path.abspath(root))
    depth, height, width = (int(n) for n in shape)
    settings = {
        "generator": __name__,
        "version": GENERATOR_VERSION,
        "patients": patients,
        "shape": [depth, height, width],
        "slice_mm": slice_mm,
        "seed": seed,
        "classes": list(VOLUME_CLASSES),
    }

    def write(staging: Path) -> None:
        (staging / "volumes").mkdir()
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["path", "label", "patient_id"])
        seeds = np.random.SeedSequence(seed).spawn(patients)
        for index in tqdm(range(patients), desc="write volume demo", unit="volume", disable=not progress):
            rng = np.random.default_rng(seeds[index])
            kind = VOLUME_CLASSES[index % len(VOLUME_CLASSES)]
            values = draw_volume(rng, (height, width, depth), slice_mm, kind)
            axcodes = STORED_ORIENTATIONS[int(rng.integers(len(STORED_ORIENTATIONS)))]
            patient = f"p{index:04d}"
            name = f"volumes/{patient}.nii.gz"
            nibabel.save(stored_image(values, slice_mm, axcodes, rng.uniform(*SCANNER_GAIN)), staging / name)
            writer.writerow([name, kind, patient])
        (staging / LABELS_FILE).write_text(table.getvalue())

    return generated_dataset(root, settings, write, "volume demo") / LABELS_FILE
