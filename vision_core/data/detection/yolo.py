"""YOLO txt labels: read an Ultralytics-style dataset into a :class:`DetectionDataset`.

A YOLO dataset is images plus one ``.txt`` per image, found by replacing the last
``images`` folder of the image path with ``labels`` (``images/train/a.jpg`` →
``labels/train/a.txt``). Each line is ``class cx cy w h`` normalised to [0, 1] by the
image width and height (a polygon ``class x1 y1 x2 y2 ...`` gives its bounding box).
The reader returns **xyxy absolute pixels, float32 [N, 4] = (x_min, y_min, x_max, y_max)**,
using each image's size read from its header.

Where it looks, given ``data``:

* a ``data.yaml`` (or any ``.yaml``) file, or a folder holding ``data.yaml``: ``path`` is the
  root (default: the YAML's folder), ``train``/``val``/``test`` name an image folder or a
  ``.txt`` list of image paths (or a list of those), ``names`` is a list or ``{id: name}``;
* a folder with ``images/`` and ``labels/``: the split's images are ``images/<split>/`` when
  that folder exists, else ``images/``; names come from ``classes.txt`` (in the folder or in
  ``labels/``) or ``class_names``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

from vision_core.data.detection.images import IMAGE_EXTENSIONS, image_size
from vision_core.data.detection.types import (
    AnnotationFormatError,
    DetectionDataset,
    DetectionRecord,
    Issue,
    resolve_image_path,
)


def read_yolo(
    data: str | os.PathLike, split: str = "train", class_names: list[str] | tuple[str, ...] | None = None
) -> DetectionDataset:
    """Read a YOLO txt dataset (see the module docstring for the layouts).

    Args:
        data: a YAML file, or a folder with ``data.yaml`` or ``images/`` + ``labels/``.
        split: the split to read (a key of the YAML, or ``images/<split>/``).
        class_names: the class list; overrides ``names`` / ``classes.txt``.

    Returns:
        A dataset with boxes as xyxy absolute pixels, float32 [N, 4], class ids int32 [N].
    """
    data = Path(os.path.abspath(data))
    if data.is_dir() and (data / "data.yaml").is_file():
        data = data / "data.yaml"
    if data.is_file():
        root, names, image_paths, issues = _from_yaml(data, split)
    else:
        root, names, image_paths, issues = _from_folder(data, split)
    names = tuple(class_names) if class_names is not None else names
    if names is None:
        raise AnnotationFormatError(
            f"{data}: no class names (add 'names' to data.yaml, a classes.txt, or pass class_names)"
        )

    records, label_files = [], set()
    for image_path in image_paths:
        label_file = label_path(image_path)
        label_files.add(label_file)
        boxes, classes, width, height = _read_labels(image_path, label_file, len(names), issues)
        records.append(
            DetectionRecord(
                image_id=len(records),
                path=image_path,
                boxes=boxes,
                classes=classes,
                width=width,
                height=height,
                annotation=str(label_file),
            )
        )
    for label_dir in {f.parent for f in label_files}:
        for orphan in sorted(set(label_dir.glob("*.txt")) - label_files - {label_dir / "classes.txt"}):
            issues.append(Issue("orphan_annotation", str(orphan), "label file without an image"))
    return DetectionDataset(
        class_names=names, records=records, split=split, root=root, format="yolo", source=data, issues=issues
    )


def label_path(image_path: Path) -> Path:
    """The label file of an image: the last ``images`` folder becomes ``labels``, the suffix ``.txt``."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _from_yaml(yaml_file: Path, split: str):
    try:
        config = yaml.safe_load(yaml_file.read_text()) or {}
    except yaml.YAMLError as error:
        raise AnnotationFormatError(f"{yaml_file}: not valid YAML ({error})") from None
    if not isinstance(config, dict):
        raise AnnotationFormatError(f"{yaml_file}: expected a mapping with 'names' and split keys")
    root = Path(os.path.normpath(yaml_file.parent / config.get("path", ".")))
    if split not in config:
        splits = [k for k in ("train", "val", "test") if k in config]
        raise AnnotationFormatError(f"{yaml_file}: no split {split!r} (found: {', '.join(splits) or 'none'})")
    names = config.get("names")
    if isinstance(names, dict):
        names = tuple(str(names[k]) for k in sorted(names, key=int))
    elif names is not None:
        names = tuple(str(n) for n in names)
    entries = config[split] if isinstance(config[split], list) else [config[split]]
    issues: list[Issue] = []
    image_paths = []
    for entry in entries:
        location = resolve_image_path(str(entry), root, root)
        if location is None:
            issues.append(Issue("path_escape", str(yaml_file), f"{split}: {entry} leaves the dataset root {root}"))
        elif location.suffix == ".txt":
            image_paths += _from_list(location, root, issues)
        else:
            image_paths += _images_in(location)
    return root, names, image_paths, issues


def _from_list(list_file: Path, root: Path, issues: list[Issue]) -> list[Path]:
    """Image paths of a ``.txt`` list (one per line, relative to the dataset root or ``./``-prefixed)."""
    paths = []
    for line in list_file.read_text().splitlines():
        if line.strip():
            path = resolve_image_path(line.strip(), root, root)
            if path is None:
                issues.append(Issue("path_escape", str(list_file), f"{line.strip()} leaves the dataset root {root}"))
            else:
                paths.append(path)
    return paths


def _from_folder(folder: Path, split: str):
    if not (folder / "images").is_dir():
        raise AnnotationFormatError(f"{folder}: not a YOLO dataset (no data.yaml and no images/ folder)")
    image_dir = folder / "images" / split if (folder / "images" / split).is_dir() else folder / "images"
    names = None
    for classes_file in (folder / "classes.txt", folder / "labels" / "classes.txt"):
        if classes_file.is_file():
            names = tuple(line.strip() for line in classes_file.read_text().splitlines() if line.strip())
            break
    return folder, names, _images_in(image_dir), []


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _read_labels(image_path: Path, label_file: Path, num_classes: int, issues: list[Issue]):
    """``(boxes xyxy pixels float32 [N, 4], classes int32 [N], width, height)`` of one image."""
    empty = np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)
    if not label_file.is_file():
        return (*empty, None, None)
    try:
        width, height = image_size(image_path)
    except OSError:
        return (*empty, None, None)  # the check reports the missing or unreadable image
    boxes, classes = [], []
    for number, line in enumerate(label_file.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        polygon = len(values) >= 7 and len(values) % 2 == 1
        if not (len(values) == 5 or polygon) or not values[0].is_integer():
            issues.append(
                Issue(
                    "malformed_annotation", str(label_file), f"line {number}: {line.strip()!r} is not 'class cx cy w h'"
                )
            )
            continue
        label = int(values[0])
        if not 0 <= label < num_classes:
            issues.append(
                Issue("unknown_class", str(label_file), f"line {number}: class {label} is not in 0..{num_classes - 1}")
            )
            continue
        if polygon:
            xs, ys = np.array(values[1::2]), np.array(values[2::2])
            box = (xs.min() * width, ys.min() * height, xs.max() * width, ys.max() * height)
        else:
            cx, cy, w, h = values[1:]
            box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        boxes.append(box)
        classes.append(label)
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int32), width, height
