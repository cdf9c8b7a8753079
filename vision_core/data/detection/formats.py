"""One entry point for every annotation format: ``--data PATH`` picks its reader.

| ``data`` is | format |
|---|---|
| a ``.json`` file, or a folder holding ``<split>/annotations.json`` (the demo layout) | COCO |
| a ``.yaml`` file, or a folder with ``data.yaml`` or ``labels/`` | YOLO |
| a folder with ``Annotations/`` or ``*.xml`` files | Pascal VOC |

All readers return boxes as **xyxy absolute pixels, float32 [N, 4] = (x_min, y_min, x_max,
y_max)** and class ids int32 [N] in 0..K-1.
"""

from __future__ import annotations

import os
from pathlib import Path

from vision_core.data.detection.coco import read_coco
from vision_core.data.detection.types import AnnotationFormatError, DetectionDataset
from vision_core.data.detection.voc import read_voc
from vision_core.data.detection.yolo import read_yolo

FORMATS = ("coco", "voc", "yolo")


def detect_format(data: str | os.PathLike, split: str = "train") -> tuple[str, Path]:
    """``(format, path to hand to its reader)`` for ``data``; raises AnnotationFormatError naming it."""
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"{data}: no such file or folder")
    if data.is_file():
        if data.suffix.lower() == ".json":
            return "coco", data
        if data.suffix.lower() in (".yaml", ".yml"):
            return "yolo", data
    elif (data / split / "annotations.json").is_file():
        return "coco", data / split / "annotations.json"
    elif (data / "data.yaml").is_file() or (data / "labels").is_dir():
        return "yolo", data
    elif (data / "Annotations").is_dir() or any(data.glob("*.xml")):
        return "voc", data
    raise AnnotationFormatError(
        f"{data}: not a detection dataset; expected a COCO .json file (or a folder with "
        f"{split}/annotations.json), a Pascal VOC folder (Annotations/ or *.xml files), "
        "or a YOLO dataset (a .yaml file, or a folder with data.yaml or images/ + labels/)"
    )


def load_detection_dataset(
    data: str | os.PathLike,
    images: str | os.PathLike | None = None,
    split: str = "train",
    class_names: list[str] | tuple[str, ...] | None = None,
    **options,
) -> DetectionDataset:
    """Read the ``split`` of the dataset at ``data``, whatever its format.

    Args:
        data: the annotation file or dataset folder (see the module table).
        images: the image root, for COCO (``file_name`` is relative to it) and VOC; default:
            the JSON's folder / ``JPEGImages``.
        split: the split to read ("train", "val", ...).
        class_names: the class list for VOC and YOLO (COCO takes its categories).
        **options: passed to the reader (``one_based`` for VOC).

    Returns:
        A :class:`DetectionDataset`: boxes xyxy absolute pixels float32 [N, 4], class ids int32 [N].
    """
    kind, path = detect_format(data, split)
    if kind == "coco":
        if class_names is not None:
            raise ValueError(f"{path}: COCO takes its class names from 'categories'; drop class_names")
        return read_coco(path, images=images, split=split, **options)
    if kind == "voc":
        return read_voc(path, images=images, split=split, class_names=class_names, **options)
    if images is not None:
        raise ValueError(f"{path}: a YOLO dataset locates its images itself (data.yaml or images/); drop images")
    return read_yolo(path, split=split, class_names=class_names, **options)
