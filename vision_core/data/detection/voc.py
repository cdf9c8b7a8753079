"""Pascal VOC XML annotations: read a folder into a :class:`DetectionDataset`.

Two layouts are recognised:

* the VOC layout: ``root/Annotations/*.xml`` with images in ``root/JPEGImages/``, and an
  optional ``root/ImageSets/Main/<split>.txt`` naming the split's images;
* a flat folder of ``*.xml`` files beside their images.

VOC corners are 1-based pixel indices, both inclusive (``xmin=1, xmax=W`` spans the whole
image). The reader returns **xyxy absolute pixels, float32 [N, 4] = (x_min, y_min, x_max,
y_max)** with the edge convention ``(xmin - 1, ymin - 1, xmax, ymax)``, as Detectron2 and
TFDS read VOC. Files written 0-based (some exporters do) read with ``one_based=False``;
otherwise their boxes touching the left/top edge show up as out of bounds in the check.
``difficult`` objects are kept with ``record.difficult`` set (evaluation ignores them).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from vision_core.data.detection.images import IMAGE_EXTENSIONS
from vision_core.data.detection.types import (
    AnnotationFormatError,
    DetectionDataset,
    DetectionRecord,
    Issue,
    resolve_image_path,
)


def read_voc(
    root: str | os.PathLike,
    images: str | os.PathLike | None = None,
    split: str = "train",
    class_names: list[str] | tuple[str, ...] | None = None,
    one_based: bool = True,
) -> DetectionDataset:
    """Read Pascal VOC XML annotations.

    Args:
        root: a VOC folder (``Annotations/``, ``JPEGImages/``) or a folder of XML files and images.
        images: the image folder; default ``root/JPEGImages`` (VOC layout) or ``root`` (flat).
        split: the split; with ``ImageSets/Main/<split>.txt`` only its images are read.
        class_names: the class list (ids follow its order); default: every name in the
            data, sorted. With a given list, objects of other names are reported as unknown.
        one_based: the XML corners are 1-based inclusive pixel indices (the VOC convention).

    Returns:
        A dataset with boxes as xyxy absolute pixels, float32 [N, 4], class ids int32 [N].
    """
    root = Path(os.path.abspath(root))
    xml_dir = root / "Annotations" if (root / "Annotations").is_dir() else root
    image_dir = (
        Path(os.path.abspath(images))
        if images is not None
        else (root / "JPEGImages" if xml_dir != root and (root / "JPEGImages").is_dir() else xml_dir)
    )
    xml_files = _split_files(root, xml_dir, split)
    if not xml_files:
        raise AnnotationFormatError(f"{xml_dir}: no Pascal VOC .xml annotation files")

    issues: list[Issue] = []
    parsed = []
    for xml_file in xml_files:
        try:
            parsed.append((xml_file, *_parse_xml(xml_file, issues)))
        except (ET.ParseError, OSError) as error:
            issues.append(Issue("malformed_annotation", str(xml_file), f"cannot parse XML ({error})"))
    names = (
        tuple(class_names)
        if class_names is not None
        else tuple(sorted({obj[0] for _, _, _, objects in parsed for obj in objects}))
    )
    class_of = {name: index for index, name in enumerate(names)}
    offset = 1.0 if one_based else 0.0

    records = []
    for xml_file, file_name, size, objects in parsed:
        path = _image_path(file_name, xml_file.stem, image_dir)
        if path is None:
            issues.append(Issue("path_escape", str(xml_file), f"<filename>{file_name}</filename> leaves {image_dir}"))
            continue
        boxes, classes, difficult = [], [], []
        for name, is_difficult, (x0, y0, x1, y1) in objects:
            if name not in class_of:
                issues.append(Issue("unknown_class", str(xml_file), f"object {name!r} is not in the class list"))
                continue
            boxes.append((x0 - offset, y0 - offset, x1, y1))
            classes.append(class_of[name])
            difficult.append(is_difficult)
        records.append(
            DetectionRecord(
                image_id=len(records),
                path=path,
                boxes=np.array(boxes, np.float32),
                classes=np.array(classes, np.int32),
                difficult=np.array(difficult, bool),
                width=size[0],
                height=size[1],
                annotation=str(xml_file),
            )
        )
    return DetectionDataset(
        class_names=names, records=records, split=split, root=image_dir, format="voc", source=root, issues=issues
    )


def _split_files(root: Path, xml_dir: Path, split: str) -> list[Path]:
    """The split's XML files: from ``ImageSets/Main/<split>.txt`` when the layout has split lists."""
    split_dir = root / "ImageSets" / "Main"
    lists = sorted(split_dir.glob("*.txt")) if split_dir.is_dir() else []
    if not lists:
        return sorted(xml_dir.glob("*.xml"))
    split_file = split_dir / f"{split}.txt"
    if not split_file.is_file():
        raise AnnotationFormatError(
            f"{split_file}: no list for split {split!r} (found: {', '.join(p.stem for p in lists)})"
        )
    stems = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    return [xml_dir / f"{stem}.xml" for stem in stems]


def _parse_xml(xml_file: Path, issues: list[Issue]):
    """``(filename, (width, height), [(name, difficult, (xmin, ymin, xmax, ymax)), ...])`` of one file."""
    tree = ET.parse(xml_file).getroot()
    size = tree.find("size")
    width = _int(size.findtext("width")) if size is not None else None
    height = _int(size.findtext("height")) if size is not None else None
    objects = []
    for index, obj in enumerate(tree.findall("object")):
        name = (obj.findtext("name") or "").strip()
        bndbox = obj.find("bndbox")
        try:
            corners = tuple(float(bndbox.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            issues.append(
                Issue(
                    "malformed_annotation",
                    str(xml_file),
                    f"object {index} ({name or 'no name'}) has no numeric bndbox xmin/ymin/xmax/ymax",
                )
            )
            continue
        if not name:
            issues.append(Issue("malformed_annotation", str(xml_file), f"object {index} has no <name>"))
            continue
        objects.append((name, bool(_int(obj.findtext("difficult")) or 0), corners))
    return (tree.findtext("filename") or "").strip(), (width or None, height or None), objects


def _int(text: str | None) -> int | None:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None


def _image_path(file_name: str, stem: str, image_dir: Path) -> Path | None:
    """The annotated file if it exists, else ``<xml stem>.<ext>``; None when the name leaves ``image_dir``."""
    named = resolve_image_path(file_name, image_dir, image_dir) if file_name else image_dir / f"{stem}.jpg"
    if named is None:
        return None
    if named.is_file():
        return named
    for extension in IMAGE_EXTENSIONS:
        candidate = image_dir / f"{stem}{extension}"
        if candidate.is_file():
            return candidate
    return named
