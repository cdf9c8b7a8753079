"""COCO detection JSON: read it into a :class:`DetectionDataset`, write one back.

COCO stores a box as ``bbox = [x, y, width, height]`` in absolute pixels; the reader turns
it into the suite's format, **xyxy absolute pixels, float32 [N, 4] = (x_min, y_min, x_max,
y_max)**, and the writer turns it back. Category ids (any integers) map to contiguous class
ids 0..K-1 in sorted id order; the original ids stay in ``dataset.category_ids`` so
predictions can be scored against the original file.

Each image's ``file_name`` is resolved against the image root: the folder holding the JSON,
or ``images`` when given (``--images``). Paths that leave that root are refused.
What the reader cannot keep (``iscrowd`` regions, unknown categories, malformed boxes,
annotations of unlisted images) goes to ``dataset.issues`` for the checker.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from vision_core.data.detection.images import image_size
from vision_core.data.detection.types import (
    AnnotationFormatError,
    DetectionDataset,
    DetectionRecord,
    Issue,
    resolve_image_path,
)
from vision_core.storage.atomic import write_atomic


def read_coco(
    annotations: str | os.PathLike, images: str | os.PathLike | None = None, split: str = "train"
) -> DetectionDataset:
    """Read a COCO detection JSON file.

    Args:
        annotations: path of the JSON (``images``, ``annotations``, ``categories``).
        images: the image root ``file_name`` is relative to; default: the JSON's folder.
        split: the split name to record.

    Returns:
        A dataset whose records hold boxes as xyxy absolute pixels, float32 [N, 4], and
        class ids int32 [N] in 0..K-1 (K = number of categories, sorted by id).
    """
    annotations = Path(annotations)
    try:
        content = json.loads(annotations.read_text())
    except json.JSONDecodeError as error:
        raise AnnotationFormatError(f"{annotations}: not valid JSON ({error})") from None
    if (
        not isinstance(content, dict)
        or not isinstance(content.get("images"), list)
        or not isinstance(content.get("categories"), list)
    ):
        raise AnnotationFormatError(f"{annotations}: not a COCO detection file (needs 'images' and 'categories' lists)")
    root = Path(os.path.abspath(images if images is not None else annotations.parent))
    source = str(annotations)

    categories = sorted(content["categories"], key=lambda c: c["id"])
    category_ids = tuple(int(c["id"]) for c in categories)
    class_of = {cid: index for index, cid in enumerate(category_ids)}
    issues: list[Issue] = []

    records: dict[int, DetectionRecord] = {}
    ordered: list[DetectionRecord] = []
    for entry in content["images"]:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("id"), int)
            or not isinstance(entry.get("file_name"), str)
        ):
            issues.append(
                Issue("malformed_annotation", source, f"image entry {entry!r} needs an int 'id' and a 'file_name'")
            )
            continue
        path = resolve_image_path(entry["file_name"], root, root)
        if path is None:
            issues.append(
                Issue(
                    "path_escape",
                    str(entry.get("file_name")),
                    f"image id {entry.get('id')} points outside the image root {root}",
                )
            )
            continue
        record = DetectionRecord(
            image_id=entry["id"], path=path, width=entry.get("width"), height=entry.get("height"), annotation=source
        )
        ordered.append(record)
        records.setdefault(record.image_id, record)
    escaped_ids = {e.get("id") for e in content["images"] if isinstance(e, dict)} - set(records)

    boxes, classes = defaultdict(list), defaultdict(list)
    crowd, orphans = Counter(), Counter()
    for ann in content.get("annotations", []):
        if not isinstance(ann, dict):
            issues.append(Issue("malformed_annotation", source, f"annotation {ann!r} is not an object"))
            continue
        image_id = ann.get("image_id")
        if image_id not in records:
            if image_id not in escaped_ids:
                orphans[image_id] += 1
            continue
        name = records[image_id].path.name
        if ann.get("iscrowd", 0):
            crowd[image_id] += 1
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            issues.append(
                Issue(
                    "malformed_annotation",
                    str(records[image_id].path),
                    f"annotation {ann.get('id')} of {name}: bbox {bbox!r} is not [x, y, w, h]",
                )
            )
            continue
        if ann.get("category_id") not in class_of:
            issues.append(
                Issue(
                    "unknown_class",
                    str(records[image_id].path),
                    f"annotation {ann.get('id')} of {name}: category_id {ann.get('category_id')!r} "
                    "is not in 'categories'",
                )
            )
            continue
        x, y, w, h = (float(v) for v in bbox)
        boxes[image_id].append((x, y, x + w, y + h))
        classes[image_id].append(class_of[ann["category_id"]])

    for image_id, count in crowd.items():
        issues.append(
            Issue("crowd_ignored", str(records[image_id].path), f"{count} iscrowd annotation(s) ignored", count=count)
        )
    for image_id, count in orphans.items():
        issues.append(
            Issue(
                "orphan_annotation",
                source,
                f"{count} annotation(s) for image id {image_id!r}, which is not in 'images'",
                count=count,
            )
        )
    for record in ordered:
        if record is records[record.image_id]:
            record.boxes = np.array(boxes[record.image_id], np.float32).reshape(-1, 4)
            record.classes = np.array(classes[record.image_id], np.int32)
            record.difficult = np.zeros((len(record.boxes),), bool)
    return DetectionDataset(
        class_names=tuple(str(c["name"]) for c in categories),
        records=ordered,
        split=split,
        root=root,
        format="coco",
        source=annotations,
        issues=issues,
        category_ids=category_ids,
    )


def coco_dict(dataset: DetectionDataset, image_root: str | os.PathLike | None = None) -> dict:
    """The dataset as a COCO detection dict (boxes written as xywh absolute pixels).

    ``file_name`` is each image's path relative to ``image_root`` (default: ``dataset.root``);
    image sizes missing from the records are read from the file headers.
    """
    image_root = Path(os.path.abspath(image_root if image_root is not None else dataset.root))
    images, annotations = [], []
    for record in dataset.records:
        width, height = record.width, record.height
        if width is None or height is None:
            width, height = image_size(record.path)
        file_name = Path(os.path.relpath(record.path, image_root)).as_posix()
        images.append({"id": int(record.image_id), "file_name": file_name, "width": int(width), "height": int(height)})
        for box, label in zip(record.boxes.tolist(), record.classes.tolist()):
            x0, y0, x1, y1 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(record.image_id),
                    "category_id": dataset.category_ids[label],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": cid, "name": name} for cid, name in zip(dataset.category_ids, dataset.class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco(dataset: DetectionDataset, path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> Path:
    """Write :func:`coco_dict` of ``dataset`` to ``path`` atomically; returns the path.

    ``image_root`` defaults to the JSON's folder, so the file reads back with :func:`read_coco`.
    """
    path = Path(path)
    content = coco_dict(dataset, image_root if image_root is not None else path.parent)
    return write_atomic(path, json.dumps(content, separators=(",", ":")).encode())


def coco_results(dataset: DetectionDataset, image_ids, boxes, classes, scores) -> list[dict]:
    """Detections in the COCO results format, ready for ``pycocotools`` ``COCO.loadRes``.

    Args:
        dataset: gives the category id of each class id.
        image_ids: int [D]; boxes: float [D, 4] xyxy absolute pixels of the original image;
        classes: int [D] class ids in 0..K-1; scores: float [D].

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    return [
        {
            "image_id": int(i),
            "category_id": dataset.category_ids[int(c)],
            "bbox": [round(v, 2) for v in b],
            "score": round(float(s), 5),
        }
        for i, b, c, s in zip(
            np.asarray(image_ids).tolist(), xywh.tolist(), np.asarray(classes).tolist(), np.asarray(scores).tolist()
        )
    ]
