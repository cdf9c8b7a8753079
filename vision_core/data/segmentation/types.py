"""The record every segmentation reader returns and every later stage consumes.

A :class:`SegmentationDataset` is one split: the class names (index = label value), the
ignore index, and for each sample its image path and its mask path (absolute). A mask is a
single-channel PNG whose pixel values are class indices (an 8-bit grey or a palette PNG, read as
indices), ``ignore_index`` marking pixels that are not scored. Images are not read here:
:mod:`~vision_core.data.segmentation.checks` decodes them up front and
:mod:`~vision_core.data.segmentation.pipeline` while training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vision_core.data.detection.types import Issue
from vision_core.data.report import ERROR

IGNORE_INDEX = 255  # VOC's border value and the usual "not scored" label

# Every kind of problem a reader or the check reports, with its severity.
SEGMENTATION_ISSUE_KINDS = {
    "missing_mask": ERROR,  # an image without a mask of the same stem
    "missing_image": ERROR,  # a mask without an image of the same stem, or a listed file that does not exist
    "unreadable_image": ERROR,  # the image cannot be decoded (corrupt, truncated, not an image)
    "unreadable_mask": ERROR,  # the mask cannot be decoded
    "rgb_mask": ERROR,  # a colour (RGB/RGBA) mask where class indices are expected
    "size_mismatch": ERROR,  # the mask's width/height differ from the image's
    "unknown_label": ERROR,  # mask values outside 0..classes-1 that are not the ignore index
    "path_escape": ERROR,  # a listed path that leaves the dataset root
}


class SegmentationIssue(Issue):
    """One problem: its ``kind`` (a key of :data:`SEGMENTATION_ISSUE_KINDS`), the file, and what is wrong."""

    def __post_init__(self):
        if self.kind not in SEGMENTATION_ISSUE_KINDS:
            raise ValueError(f"unknown issue kind {self.kind!r}: expected one of {', '.join(SEGMENTATION_ISSUE_KINDS)}")

    @property
    def severity(self) -> str:
        return SEGMENTATION_ISSUE_KINDS[self.kind]


@dataclass
class SegmentationDataset:
    """A split of a semantic-segmentation dataset.

    Attributes:
        source: the folder it was read from (named in reports and errors).
        split: the split name ("train", "val", ...).
        class_names: names indexed by mask value (0..K-1).
        image_paths, mask_paths: absolute paths, one pair per sample (same stems).
        ignore_index: the mask value that is never scored nor trained on.
        colors: RGB colour per class for drawings (empty: a default palette).
        label_map: the class index of each value stored in the masks (Cityscapes' label ids -> train ids);
            values past its end are kept (None: masks hold class indices).
        issues: what the reader found while pairing files (unpaired images or masks, escaping paths);
            the pairs listed are the usable ones.
    """

    source: str
    split: str
    class_names: tuple[str, ...]
    image_paths: list[Path]
    mask_paths: list[Path]
    ignore_index: int = IGNORE_INDEX
    colors: tuple[tuple[int, int, int], ...] = ()
    label_map: tuple[int, ...] | None = None
    issues: list[SegmentationIssue] = field(default_factory=list)

    def __post_init__(self):
        self.source = str(self.source)
        self.class_names = tuple(str(name) for name in self.class_names)
        self.image_paths = [Path(p) for p in self.image_paths]
        self.mask_paths = [Path(p) for p in self.mask_paths]
        self.colors = tuple(tuple(int(c) for c in color) for color in self.colors)
        if len(self.image_paths) != len(self.mask_paths):
            raise ValueError(f"{self.source}: {len(self.image_paths)} images but {len(self.mask_paths)} masks")
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"{self.source}: class names must be given and distinct: {list(self.class_names)}")
        if 0 <= self.ignore_index < len(self.class_names):
            raise ValueError(
                f"{self.source}: ignore index {self.ignore_index} is a class ({self.class_names[self.ignore_index]!r})"
            )
        if self.colors and len(self.colors) != len(self.class_names):
            raise ValueError(f"{self.source}: {len(self.colors)} colours for {len(self.class_names)} classes")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.image_paths)
