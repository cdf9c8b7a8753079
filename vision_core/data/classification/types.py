"""The record every classification reader returns and every later stage consumes.

A :class:`ClassificationDataset` is one split: the class names, and for each image its
absolute path, its label (an int64 index into ``class_names``, or for a multi-label dataset an
int64 multi-hot row over them) and, when the source names patients, its patient id. Images are not read
here: :mod:`~vision_core.data.classification.checks` decodes them up front and
:mod:`~vision_core.data.classification.pipeline` while training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The suffixes readers list (case-insensitive); every one decodes with OpenCV and tf.io.decode_image.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# DICOM files, read with pydicom (vision_core.data.classification.dicom); readers list them beside the images.
DICOM_SUFFIXES = (".dcm", ".dicom")
READABLE_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES
# NIfTI volumes, read with nibabel (vision_core.data.classification.nifti); readers list them for a volume model.
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_dicom(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a DICOM file (by its suffix, any case)."""
    return Path(path).suffix.lower() in DICOM_SUFFIXES


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a NIfTI volume (``.nii`` or ``.nii.gz``, any case)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


@dataclass
class ClassificationDataset:
    """A split of an image-classification dataset.

    Attributes:
        source: the folder or CSV file it was read from (named in reports and errors).
        split: the split name ("train", "val", ...).
        class_names: names indexed by label (0..K-1).
        paths: absolute image paths, one per sample.
        labels: int64 [N], index into ``class_names`` of each path; or, multi-label, int64 [N, K]
            multi-hot rows (1 where the image shows the class, an all-zero row for none of them).
        patient_ids: the patient of each path (str [N]), or None when the source names none.
    """

    source: str
    split: str
    class_names: tuple[str, ...]
    paths: list[Path]
    labels: np.ndarray
    patient_ids: list[str] | None = None

    def __post_init__(self):
        self.source = str(self.source)
        self.class_names = tuple(str(name) for name in self.class_names)
        self.paths = [Path(path) for path in self.paths]
        labels = np.asarray(self.labels, np.int64)
        self.labels = labels if labels.ndim == 2 else labels.reshape(-1)
        if len(self.labels) != len(self.paths):
            raise ValueError(f"{self.source}: {len(self.paths)} paths but {len(self.labels)} labels")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"{self.source}: class names repeat: {list(self.class_names)}")
        if self.patient_ids is not None:
            self.patient_ids = [str(patient) for patient in self.patient_ids]
            if len(self.patient_ids) != len(self.paths):
                raise ValueError(f"{self.source}: {len(self.paths)} paths but {len(self.patient_ids)} patient ids")
        if self.multi_label:
            if self.labels.shape[1] != len(self.class_names) or not np.isin(self.labels, (0, 1)).all():
                raise ValueError(
                    f"{self.source}: multi-label rows must be 0/1 over {len(self.class_names)} classes, "
                    f"got shape {self.labels.shape}"
                )
            return
        outside = (self.labels < 0) | (self.labels >= len(self.class_names))
        if outside.any():
            index = int(np.argmax(outside))
            raise ValueError(
                f"{self.paths[index]}: label {self.labels[index]} is not in "
                f"0..{len(self.class_names) - 1} ({self.source})"
            )

    @property
    def multi_label(self) -> bool:
        """Whether each image carries a set of classes (multi-hot rows) rather than one."""
        return self.labels.ndim == 2

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        """Samples per class, in class order (classes without samples count 0); multi-label: images showing it."""
        if self.multi_label:
            return dict(zip(self.class_names, self.labels.sum(axis=0).tolist()))
        totals = np.bincount(self.labels, minlength=self.num_classes)
        return dict(zip(self.class_names, totals.tolist()))
