"""Cityscapes fine annotations: ``leftImg8bit/`` images and ``gtFine/*_labelIds.png`` masks, mapped to the 19
train ids.

Layout::

    leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png
    gtFine/<split>/<city>/<stem>_gtFine_labelIds.png

The label ids (0..33) map to the 19 evaluated classes of :data:`CITYSCAPES_CLASSES` (cityscapesScripts'
``labels.py`` train ids); every other id maps to the ignore index (:func:`label_map`). An image without
its ``labelIds`` mask is ``missing_mask``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vision_core.data.segmentation.types import IGNORE_INDEX, SegmentationDataset, SegmentationIssue

# (train id order) name, label id, colour
CITYSCAPES_LABELS = (
    ("road", 7, (128, 64, 128)),
    ("sidewalk", 8, (244, 35, 232)),
    ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)),
    ("fence", 13, (190, 153, 153)),
    ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)),
    ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)),
    ("terrain", 22, (152, 251, 152)),
    ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)),
    ("rider", 25, (255, 0, 0)),
    ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)),
    ("bus", 28, (0, 60, 100)),
    ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)),
    ("bicycle", 33, (119, 11, 32)),
)
CITYSCAPES_CLASSES = tuple(name for name, _, _ in CITYSCAPES_LABELS)
LABEL_IDS = 34  # 0 (unlabeled) .. 33 (bicycle)
IMAGE_SUFFIX, MASK_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"


def label_map(ignore_index: int = IGNORE_INDEX) -> tuple[int, ...]:
    """Train id of each label id 0..33 (the ignore index for the ids not evaluated)."""
    table = [ignore_index] * LABEL_IDS
    for train_id, (_, label_id, _) in enumerate(CITYSCAPES_LABELS):
        table[label_id] = train_id
    return tuple(table)


def is_cityscapes(root: Path) -> bool:
    return (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir()


def load_cityscapes(
    root: Path, split: str, class_names: Sequence[str] | None = None, ignore_index: int = IGNORE_INDEX
) -> SegmentationDataset:
    """The ``split`` (``train``, ``val``) of the Cityscapes folder ``root`` (module docstring)."""
    folder = root / "leftImg8bit" / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no {split!r} split of leftImg8bit")
    issues, images, masks = [], [], []
    for image in sorted(folder.glob(f"*/*{IMAGE_SUFFIX}")):
        stem = image.name.removesuffix(IMAGE_SUFFIX)
        mask = root / "gtFine" / split / image.parent.name / f"{stem}{MASK_SUFFIX}"
        if not mask.is_file():
            issues.append(SegmentationIssue("missing_mask", str(image), f"no {mask.relative_to(root)}"))
            continue
        images.append(image)
        masks.append(mask)
    return SegmentationDataset(
        source=str(root),
        split=split,
        class_names=tuple(class_names or CITYSCAPES_CLASSES),
        image_paths=images,
        mask_paths=masks,
        ignore_index=ignore_index,
        colors=tuple(color for _, _, color in CITYSCAPES_LABELS) if not class_names else (),
        label_map=label_map(ignore_index),
        issues=issues,
    )
