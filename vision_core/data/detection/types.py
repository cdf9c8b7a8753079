"""The records every detection reader returns and every later stage consumes.

Box format wherever a box crosses a boundary: **xyxy absolute pixels, float32, [N, 4] =
(x_min, y_min, x_max, y_max)** in the frame of the image as decoded by OpenCV (EXIF
orientation applied). Class ids are int32 [N] in ``0..num_classes-1``; there is no
background id.

* :class:`DetectionRecord`: one image's path and annotations; the image is not read.
* :class:`DetectionSample`: one image read from disk with its annotations (a dict).
* :class:`DetectionDataset`: class names, records, split name, the dataset root that
  image paths must stay inside, and the :class:`Issue` list its reader found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np

from vision_core.data.detection.images import read_image
from vision_core.data.report import ERROR, WARNING

BOX_FORMAT = "xyxy"


# Every kind of problem a reader or the checker reports, with its severity.
ISSUE_KINDS = {
    "missing_image": ERROR,  # the image file does not exist
    "unreadable_image": ERROR,  # OpenCV cannot decode it (corrupt, truncated, not an image)
    "path_escape": ERROR,  # the image path leaves the dataset root
    "duplicate_image_id": ERROR,  # a second record with an image id already used
    "size_mismatch": ERROR,  # annotated width/height differ from the decoded image
    "box_out_of_bounds": ERROR,  # a box extends beyond the image
    "degenerate_box": ERROR,  # x_max <= x_min, y_max <= y_min, or a non-finite coordinate
    "unknown_class": ERROR,  # a label outside the class list
    "malformed_annotation": ERROR,  # an annotation that cannot be parsed
    "no_boxes": WARNING,  # an image without any box (kept: a valid negative)
    "crowd_ignored": WARNING,  # COCO ``iscrowd`` annotations, not used as boxes
    "orphan_annotation": WARNING,  # annotations for an image that is not in the dataset
}


class AnnotationFormatError(ValueError):
    """An annotation file or folder whose structure is not the format it claims to be."""


@dataclass(frozen=True)
class Issue:
    """One problem: its ``kind`` (a key of :data:`ISSUE_KINDS`), the file it is in, and what is wrong."""

    kind: str
    path: str
    message: str
    count: int = 1

    def __post_init__(self):
        if self.kind not in ISSUE_KINDS:
            raise ValueError(f"unknown issue kind {self.kind!r}: expected one of {', '.join(ISSUE_KINDS)}")

    @property
    def severity(self) -> str:
        return ISSUE_KINDS[self.kind]


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


@dataclass
class DetectionRecord:
    """One image on disk and its annotations.

    Attributes:
        image_id: int, unique in the dataset (COCO ``id``; VOC/YOLO number images in sorted order).
        path: absolute path of the image file.
        boxes: float32 [N, 4], xyxy absolute pixels (x_min, y_min, x_max, y_max).
        classes: int32 [N], class ids in 0..num_classes-1.
        difficult: bool [N], the Pascal VOC ``difficult`` flag (all False for other formats).
        width, height: image size in pixels as annotated, or None when the annotation has none.
        annotation: the file the annotations came from (named in error messages).
    """

    image_id: int
    path: Path
    boxes: np.ndarray = field(default_factory=_empty_boxes)
    classes: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    difficult: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    annotation: str = ""

    def __post_init__(self):
        self.path = Path(self.path)
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.classes = np.asarray(self.classes, np.int32).reshape(-1)
        if len(self.classes) != len(self.boxes):
            raise ValueError(f"{self.path}: {len(self.boxes)} boxes but {len(self.classes)} classes")
        if self.difficult is None:
            self.difficult = np.zeros((len(self.boxes),), bool)
        self.difficult = np.asarray(self.difficult, bool).reshape(-1)


class DetectionSample(TypedDict):
    """One image with its annotations, as readers hand it on to augmentation.

    image: uint8 [H, W, 3] RGB. boxes: float32 [N, 4] xyxy absolute pixels.
    classes: int32 [N] in 0..num_classes-1. image_id: int. path: str.
    """

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    image_id: int
    path: str


@dataclass
class DetectionDataset:
    """A split of a detection dataset: class names, records (images read lazily), and reader issues.

    Attributes:
        class_names: names indexed by class id (0..K-1).
        records: one :class:`DetectionRecord` per image; boxes xyxy absolute pixels float32 [N, 4].
        split: the split name ("train", "val", ...).
        root: the dataset root; every image path must stay inside it.
        format: "coco", "voc" or "yolo".
        source: the annotation file or folder the dataset was read from.
        issues: problems the reader found while parsing (annotations it could not keep);
            :func:`vision_core.data.detection.checks.check_dataset` reports them with its own.
        category_ids: the COCO category id of each class (``class id + 1`` for other formats),
            so predictions can be written back against the original annotation file.
    """

    class_names: tuple[str, ...]
    records: list[DetectionRecord]
    split: str
    root: Path
    format: str = "coco"
    source: Path | None = None
    issues: list[Issue] = field(default_factory=list)
    category_ids: tuple[int, ...] = ()

    def __post_init__(self):
        self.class_names = tuple(self.class_names)
        self.root = Path(self.root)
        if not self.category_ids:
            self.category_ids = tuple(range(1, len(self.class_names) + 1))
        if len(self.category_ids) != len(self.class_names):
            raise ValueError(f"{len(self.class_names)} class names but {len(self.category_ids)} category ids")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_boxes(self) -> int:
        return sum(len(r.boxes) for r in self.records)

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, index: int) -> DetectionSample:
        """Read image ``index`` from disk; raises ``FileNotFoundError`` / ``UnreadableImageError``."""
        record = self.records[index]
        return DetectionSample(
            image=read_image(record.path),
            boxes=record.boxes.copy(),
            classes=record.classes.copy(),
            image_id=record.image_id,
            path=str(record.path),
        )


def inside_root(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` stays inside ``root`` after resolving ``..`` (lexically; symlinks are trusted)."""
    path = os.path.normpath(os.path.abspath(path))
    root = os.path.normpath(os.path.abspath(root))
    return os.path.commonpath([path, root]) == root


def resolve_image_path(name: str, image_root: Path, dataset_root: Path) -> Path | None:
    """``image_root / name`` as an absolute path, or None when it escapes ``dataset_root``."""
    path = Path(os.path.normpath(os.path.abspath(image_root / name)))
    return path if inside_root(path, dataset_root) else None
