"""Validate a detection dataset up front (``<app> data check``), naming every bad file and box.

:func:`check_dataset` decodes every image (so corrupt and truncated files are found before a
long run, not halfway through it), compares boxes against the decoded size, and merges the
problems the reader met while parsing (``dataset.issues``). The :class:`DatasetReport`
counts problems by kind, prints as a table, serialises to JSON, and is ``ok`` when no
error was found; warnings (images without boxes, ignored crowd regions) do not fail it.

Boxes are checked in the suite's format: **xyxy absolute pixels, float32 [N, 4] =
(x_min, y_min, x_max, y_max)**, against the image as decoded (EXIF orientation applied).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from vision_core.data.detection.images import UnreadableImageError, read_image
from vision_core.data.detection.types import (
    ISSUE_KINDS,
    DetectionDataset,
    DetectionRecord,
    Issue,
    inside_root,
)
from vision_core.data.report import CheckReport


@dataclass
class DatasetReport(CheckReport):
    """What :func:`check_dataset` found: dataset totals and every :class:`Issue` (counted in boxes for box
    kinds, in images for image kinds)."""

    kinds: ClassVar[dict[str, str]] = ISSUE_KINDS
    source: str
    format: str
    split: str
    num_images: int
    num_boxes: int
    boxes_per_class: dict[str, int]
    issues: list[Issue] = field(default_factory=list)

    def totals(self) -> dict:
        return {
            "source": self.source,
            "format": self.format,
            "split": self.split,
            "images": self.num_images,
            "boxes": self.num_boxes,
            "boxes_per_class": self.boxes_per_class,
        }

    def summary(self) -> list[str]:
        classes = ", ".join(f"{name} {count}" for name, count in self.boxes_per_class.items())
        return [
            f"{self.format} dataset, split {self.split!r}: {self.source}",
            f"{self.num_images} images, {self.num_boxes} boxes ({classes})",
        ]


def check_dataset(dataset: DetectionDataset, workers: int = 2, bounds_tolerance: float = 1.0) -> DatasetReport:
    """Check every record of ``dataset`` (and merge its reader's issues) into a :class:`DatasetReport`.

    Args:
        dataset: boxes xyxy absolute pixels float32 [N, 4], class ids int32 [N].
        workers: threads decoding images (OpenCV releases the GIL while decoding).
        bounds_tolerance: pixels a box may extend past the image edge before it counts as
            out of bounds (annotation tools round; the pipeline clips such boxes).

    Returns:
        The report; ``report.ok`` is False when any error was found.
    """
    issues = list(dataset.issues)
    first_path: dict[int, str] = {}
    for record in dataset.records:
        if record.image_id in first_path:
            issues.append(
                Issue(
                    "duplicate_image_id",
                    str(record.path),
                    f"image id {record.image_id} is already used by {first_path[record.image_id]}",
                )
            )
        else:
            first_path[record.image_id] = str(record.path)

    def check(record: DetectionRecord) -> list[Issue]:
        return _check_record(record, dataset, bounds_tolerance)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for found in pool.map(check, dataset.records):
            issues += found
    per_class = np.bincount(
        np.concatenate(
            [r.classes[(r.classes >= 0) & (r.classes < dataset.num_classes)] for r in dataset.records]
            or [np.zeros(0, np.int32)]
        ),
        minlength=dataset.num_classes,
    )
    return DatasetReport(
        source=str(dataset.source or dataset.root),
        format=dataset.format,
        split=dataset.split,
        num_images=len(dataset),
        num_boxes=dataset.num_boxes,
        boxes_per_class=dict(zip(dataset.class_names, per_class.tolist())),
        issues=issues,
    )


def _check_record(record: DetectionRecord, dataset: DetectionDataset, tolerance: float) -> list[Issue]:
    """The problems of one image and its boxes; the image is decoded unless its path is refused."""
    path = str(record.path)
    issues = []
    size = None
    if not inside_root(record.path, dataset.root):
        issues.append(Issue("path_escape", path, f"outside the dataset root {dataset.root}; not read"))
    else:
        try:
            height, width = read_image(record.path).shape[:2]
            size = (width, height)
        except FileNotFoundError:
            issues.append(Issue("missing_image", path, f"file not found (annotated in {record.annotation})"))
        except UnreadableImageError:
            issues.append(Issue("unreadable_image", path, "cannot be decoded (corrupt, truncated or not an image)"))
    if size and record.width is not None and record.height is not None and size != (record.width, record.height):
        issues.append(
            Issue("size_mismatch", path, f"annotated {record.width}x{record.height}, decoded {size[0]}x{size[1]}")
        )
    for index, (box, label) in enumerate(zip(record.boxes, record.classes)):
        shown = f"box {index} [{', '.join(f'{v:g}' for v in box.tolist())}]"
        x0, y0, x1, y1 = box.tolist()
        if not np.isfinite(box).all() or x1 <= x0 or y1 <= y0:
            issues.append(Issue("degenerate_box", path, f"{shown} has no area (needs x_max > x_min, y_max > y_min)"))
        elif size and (x0 < -tolerance or y0 < -tolerance or x1 > size[0] + tolerance or y1 > size[1] + tolerance):
            issues.append(Issue("box_out_of_bounds", path, f"{shown} extends beyond the {size[0]}x{size[1]} image"))
        if not 0 <= label < dataset.num_classes:
            issues.append(
                Issue("unknown_class", path, f"{shown} has class id {label}, not in 0..{dataset.num_classes - 1}")
            )
    if not len(record.boxes):
        issues.append(Issue("no_boxes", path, "no boxes (kept as a negative image)"))
    return issues
