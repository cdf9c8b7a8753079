"""Pascal VOC segmentation: ``JPEGImages/`` + ``SegmentationClass/`` (palette PNGs) and the split lists.

Layout (``VOCdevkit/VOC2012`` or any folder holding it)::

    JPEGImages/<id>.jpg   SegmentationClass/<id>.png   ImageSets/Segmentation/<split>.txt (one id per line)

Masks are palette PNGs read as indices: 0 background, 1..20 the classes of :data:`VOC_CLASSES`,
255 the object borders and difficult regions (ignored). A listed id whose image or mask is absent is
recorded as ``missing_image`` / ``missing_mask``; an id that leads out of the folder as ``path_escape``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vision_core.data.detection.types import inside_root
from vision_core.data.segmentation.types import IGNORE_INDEX, SegmentationDataset, SegmentationIssue

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def is_voc(root: Path) -> bool:
    return (root / "SegmentationClass").is_dir() and (root / "ImageSets" / "Segmentation").is_dir()


def load_voc_segmentation(
    root: Path, split: str, class_names: Sequence[str] | None = None, ignore_index: int = IGNORE_INDEX
) -> SegmentationDataset:
    """The ``split`` of the VOC folder ``root`` (module docstring); class names default to :data:`VOC_CLASSES`."""
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        found = sorted(p.stem for p in listing.parent.glob("*.txt"))
        raise FileNotFoundError(f"{listing}: no {split!r} list (lists there: {', '.join(found) or 'none'})")
    issues, images, masks = [], [], []
    for line in listing.read_text().split():
        image, mask = root / "JPEGImages" / f"{line}.jpg", root / "SegmentationClass" / f"{line}.png"
        if not inside_root(image, root) or not inside_root(mask, root):
            issues.append(SegmentationIssue("path_escape", f"{listing}: {line}", f"id leads out of {root}"))
        elif not image.is_file():
            issues.append(SegmentationIssue("missing_image", str(image), f"listed in {listing.name}, not found"))
        elif not mask.is_file():
            issues.append(SegmentationIssue("missing_mask", str(mask), f"listed in {listing.name}, not found"))
        else:
            images.append(image)
            masks.append(mask)
    return SegmentationDataset(
        source=str(root),
        split=split,
        class_names=tuple(class_names or VOC_CLASSES),
        image_paths=images,
        mask_paths=masks,
        ignore_index=ignore_index,
        issues=issues,
    )
