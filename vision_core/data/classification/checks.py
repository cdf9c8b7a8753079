"""Validate a classification split up front (``classify data check``), naming every bad file.

:func:`check_classification_dataset` decodes every image with OpenCV, and every DICOM file with
pydicom, and every NIfTI volume with nibabel (so corrupt and truncated files, DICOM files without
pixel data and NIfTI files that are not 3D volumes are found before a long run, not halfway through
it) and counts samples per class; :func:`check_split_overlap` names images that two splits share, by
resolved path or by file content (SHA-256), which would
score a model on its own training images; :func:`check_patient_overlap` names patients with
images in both splits, which would score a model on the same patient's other eye or view. Problems are
:class:`ClassificationIssue` entries, collected in a :class:`ClassificationReport` that prints
as a table, serialises to JSON, and is ``ok`` when no error was found.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from vision_core.data.classification.dicom import read_dicom
from vision_core.data.classification.nifti import WrongDimensionsError, volume_array
from vision_core.data.classification.types import ClassificationDataset, is_dicom, is_nifti
from vision_core.data.detection.images import UnreadableImageError, read_image
from vision_core.data.detection.types import Issue
from vision_core.data.report import ERROR, WARNING, CheckReport

# Every kind of problem the checks report, with its severity.
CLASSIFICATION_ISSUE_KINDS = {
    "missing_image": ERROR,  # the image file does not exist
    "unreadable_image": ERROR,  # OpenCV, pydicom or nibabel cannot decode it (corrupt, truncated, no pixels)
    "wrong_dimensions": ERROR,  # a NIfTI file that is not a 3D volume (a 2D image, or several volumes)
    "too_few_samples": ERROR,  # a class with fewer than min_per_class images
    "duplicate_image": WARNING,  # one path listed more than once in the split
    "split_overlap": WARNING,  # an image of this split is also in the other one (same path or bytes)
    "patient_in_two_splits": ERROR,  # a patient with images in both splits
}


class ClassificationIssue(Issue):
    """One problem: its ``kind`` (a key of :data:`CLASSIFICATION_ISSUE_KINDS`), the file or class, and what is wrong."""

    def __post_init__(self):
        if self.kind not in CLASSIFICATION_ISSUE_KINDS:
            raise ValueError(
                f"unknown issue kind {self.kind!r}: expected one of {', '.join(CLASSIFICATION_ISSUE_KINDS)}"
            )

    @property
    def severity(self) -> str:
        return CLASSIFICATION_ISSUE_KINDS[self.kind]


@dataclass
class ClassificationReport(CheckReport):
    """What :func:`check_classification_dataset` found: totals and every :class:`ClassificationIssue`."""

    kinds: ClassVar[dict[str, str]] = CLASSIFICATION_ISSUE_KINDS
    source: str
    split: str
    num_images: int
    images_per_class: dict[str, int]
    issues: list[ClassificationIssue] = field(default_factory=list)
    patients: int | None = None  # distinct patient ids, when the source names them

    def totals(self) -> dict:
        return {
            "source": self.source,
            "split": self.split,
            "images": self.num_images,
            "images_per_class": self.images_per_class,
            **({} if self.patients is None else {"patients": self.patients}),
        }

    def summary(self) -> list[str]:
        classes = ", ".join(f"{name} {count}" for name, count in self.images_per_class.items())
        patients = "" if self.patients is None else f" of {self.patients} patients"
        return [
            f"classification dataset, split {self.split!r}: {self.source}",
            f"{self.num_images} images{patients} in {len(self.images_per_class)} classes ({classes})",
        ]


def check_classification_dataset(
    dataset: ClassificationDataset, min_per_class: int = 2, workers: int = 2
) -> ClassificationReport:
    """Decode every image of ``dataset`` and count its classes into a :class:`ClassificationReport`.

    Args:
        dataset: paths and int64 labels [N] into ``dataset.class_names``.
        min_per_class: a class with fewer images is an error (``too_few_samples``), an empty
            class included; 0 turns the count check off.
        workers: threads decoding images (OpenCV releases the GIL while decoding).

    Returns:
        The report; ``report.ok`` is False when any error was found.
    """
    issues = []
    for path, count in Counter(os.path.normpath(p) for p in dataset.paths).items():
        if count > 1:
            issues.append(ClassificationIssue("duplicate_image", path, f"listed {count} times in {dataset.source}"))
    with ThreadPoolExecutor(max(1, workers)) as pool:
        issues += [issue for issue in pool.map(_check_image, dataset.paths) if issue is not None]
    per_class = dataset.counts()
    for name, count in per_class.items():
        if count < min_per_class:
            issues.append(
                ClassificationIssue(
                    "too_few_samples",
                    f"class {name!r}",
                    f"{count} image(s) in {dataset.source}, fewer than {min_per_class}",
                )
            )
    return ClassificationReport(
        source=dataset.source,
        split=dataset.split,
        num_images=len(dataset),
        images_per_class=per_class,
        issues=issues,
        patients=None if dataset.patient_ids is None else len(set(dataset.patient_ids)),
    )


def _check_image(path: Path) -> ClassificationIssue | None:
    try:
        if is_dicom(path):
            read_dicom(path)
        elif is_nifti(path):
            volume_array(path)
        else:
            read_image(path)
    except FileNotFoundError:
        return ClassificationIssue("missing_image", str(path), "file not found")
    except WrongDimensionsError as error:
        return ClassificationIssue("wrong_dimensions", str(path), str(error).removeprefix(f"{path}: "))
    except UnreadableImageError as error:
        own_reason = is_dicom(path) or is_nifti(path)
        reason = str(error).removeprefix(f"{path}: ") if own_reason else "corrupt, truncated or not an image"
        return ClassificationIssue("unreadable_image", str(path), f"cannot be decoded ({reason})")
    return None


def file_digest(path: str | os.PathLike) -> str | None:
    """SHA-256 hex digest of a file's bytes, or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def check_split_overlap(
    train: ClassificationDataset, val: ClassificationDataset, workers: int = 2
) -> list[ClassificationIssue]:
    """``split_overlap`` warnings, one per image of ``val`` that is also in ``train``.

    An image is shared when its resolved path (symlinks followed) is a train image's, or when
    its bytes are (SHA-256; copies under another name). Each issue names the val image and the
    train image it repeats. Append them to a report: ``report.issues += check_split_overlap(...)``.
    """
    train_paths = {Path(p).resolve(): p for p in train.paths}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        train_digests = dict(zip(pool.map(file_digest, train.paths), train.paths))
        val_digests = list(pool.map(file_digest, val.paths))
    train_digests.pop(None, None)
    issues = []
    for path, digest in zip(val.paths, val_digests):
        same = train_paths.get(Path(path).resolve())
        if same is not None:
            issues.append(ClassificationIssue("split_overlap", str(path), f"is also {train.split} image {same}"))
        elif digest is not None and digest in train_digests:
            issues.append(
                ClassificationIssue(
                    "split_overlap", str(path), f"has the same bytes as {train.split} image {train_digests[digest]}"
                )
            )
    return issues


def check_patient_overlap(train: ClassificationDataset, val: ClassificationDataset) -> list[ClassificationIssue]:
    """``patient_in_two_splits`` errors, one per patient with images in both ``train`` and ``val`` (sorted by id),
    naming how many images each split holds; none when either split has no patient ids."""
    if train.patient_ids is None or val.patient_ids is None:
        return []
    in_train, in_val = Counter(train.patient_ids), Counter(val.patient_ids)
    return [
        ClassificationIssue(
            "patient_in_two_splits",
            f"patient {patient!r}",
            f"{in_train[patient]} image(s) in {train.split} ({train.source}) and {in_val[patient]} in {val.split} "
            f"({val.source})",
        )
        for patient in sorted(set(in_train) & set(in_val))
    ]
