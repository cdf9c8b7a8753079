"""Validate a segmentation split up front (``segment data check``), naming every bad pair.

:func:`check_segmentation_dataset` decodes every image (OpenCV) and mask (Pillow, as indices),
and reports, per file: ``missing_image`` / ``missing_mask``, ``unreadable_image`` /
``unreadable_mask``, ``rgb_mask`` (colour where indices are expected), ``size_mismatch`` and
``unknown_label`` (values outside the classes that are not the ignore index), beside the
reader's pairing problems (``dataset.issues``). It counts pixels per class and ignored pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from vision_core.data.detection.images import UnreadableImageError, read_image
from vision_core.data.report import CheckReport
from vision_core.data.segmentation.masks import RGBMaskError, map_labels, read_mask
from vision_core.data.segmentation.types import SEGMENTATION_ISSUE_KINDS, SegmentationDataset, SegmentationIssue


@dataclass
class SegmentationReport(CheckReport):
    """What :func:`check_segmentation_dataset` found: totals and every :class:`SegmentationIssue`."""

    kinds: ClassVar[dict[str, str]] = SEGMENTATION_ISSUE_KINDS
    source: str
    split: str
    num_images: int
    pixels_per_class: dict[str, int]
    ignored_pixels: int
    issues: list[SegmentationIssue] = field(default_factory=list)

    def totals(self) -> dict:
        return {
            "source": self.source,
            "split": self.split,
            "images": self.num_images,
            "pixels_per_class": self.pixels_per_class,
            "ignored_pixels": self.ignored_pixels,
        }

    def summary(self) -> list[str]:
        total = sum(self.pixels_per_class.values()) or 1
        shares = ", ".join(f"{name} {count / total:.1%}" for name, count in self.pixels_per_class.items())
        return [
            f"segmentation dataset, split {self.split!r}: {self.source}",
            f"{self.num_images} image/mask pairs; labelled pixels: {shares}; ignored pixels: {self.ignored_pixels}",
        ]


def check_pair(
    image_path: Path, mask_path: Path, num_classes: int, ignore_index: int, label_map: Sequence[int] | None = None
) -> tuple[list[SegmentationIssue], np.ndarray | None]:
    """The problems of one pair and, when its mask is usable, its pixel count per class [num_classes + 1]
    (the last entry: ignored pixels); mask values go through ``label_map`` first."""
    issues, size = [], None
    try:
        size = read_image(image_path).shape[:2]
    except FileNotFoundError:
        issues.append(SegmentationIssue("missing_image", str(image_path), "file not found"))
    except UnreadableImageError:
        issues.append(
            SegmentationIssue(
                "unreadable_image", str(image_path), "cannot be decoded (corrupt, truncated or not an image)"
            )
        )
    try:
        mask = map_labels(read_mask(mask_path), label_map)
    except FileNotFoundError:
        return [*issues, SegmentationIssue("missing_mask", str(mask_path), "file not found")], None
    except UnreadableImageError:
        return [*issues, SegmentationIssue("unreadable_mask", str(mask_path), "cannot be decoded")], None
    except RGBMaskError as error:
        return [*issues, SegmentationIssue("rgb_mask", str(mask_path), str(error).split(": ", 1)[1])], None
    if size is not None and mask.shape != size:
        issues.append(
            SegmentationIssue(
                "size_mismatch",
                str(mask_path),
                f"mask is {mask.shape[1]}x{mask.shape[0]}, image {image_path.name} is {size[1]}x{size[0]}",
            )
        )
    values, counts = np.unique(mask, return_counts=True)
    unknown = [int(v) for v in values if not (0 <= v < num_classes or v == ignore_index)]
    if unknown:
        issues.append(
            SegmentationIssue(
                "unknown_label",
                str(mask_path),
                f"values {unknown} are outside the classes 0..{num_classes - 1} "
                f"and not the ignore index {ignore_index}",
            )
        )
    histogram = np.zeros(num_classes + 1, np.int64)
    for value, count in zip(values, counts):
        if 0 <= value < num_classes:
            histogram[value] += count
        elif value == ignore_index:
            histogram[-1] += count
    return issues, histogram


def check_segmentation_dataset(dataset: SegmentationDataset, workers: int = 2) -> SegmentationReport:
    """Decode every pair of ``dataset`` into a :class:`SegmentationReport` (``report.ok``: no error)."""
    issues = list(dataset.issues)
    histogram = np.zeros(dataset.num_classes + 1, np.int64)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for pair_issues, counts in pool.map(
            lambda pair: check_pair(*pair, dataset.num_classes, dataset.ignore_index, dataset.label_map),
            zip(dataset.image_paths, dataset.mask_paths),
        ):
            issues += pair_issues
            if counts is not None:
                histogram += counts
    return SegmentationReport(
        source=dataset.source,
        split=dataset.split,
        num_images=len(dataset),
        pixels_per_class=dict(zip(dataset.class_names, histogram[:-1].tolist())),
        ignored_pixels=int(histogram[-1]),
        issues=issues,
    )
