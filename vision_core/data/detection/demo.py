"""The built-in detection dataset: shapes of six classes on textured backgrounds, from a seed.

Extends the classification shapes of :mod:`vision_core.data.synthetic` to detection: each
image holds 1 to ``max_objects`` shapes with sides log-uniform from ``min_size`` (6 % by
default) to half of the image side, rotated a little, on a noise, gradient or stripe
background; later shapes may partly cover earlier ones, and every shape keeps at least
``min_visible`` (70 % by default) of its pixels. ``min_size=0.03, min_visible=0.5`` gives the
harder variant the suite shipped first (on the 200 validation images, 40 % of boxes are
COCO-small, under 32x32 px of area, instead of 20 %). A box is the tight extent of the
shape's *visible* pixels (as a COCO annotator would draw it), in **xyxy absolute pixels,
float32 [N, 4] = (x_min, y_min, x_max, y_max)**.

Every image comes from its own generator seeded by ``(seed, split, index)``, so a split is
the same whatever the other split's size. :func:`write_demo_dataset` writes images plus a
COCO JSON per split, atomically, and reuses a folder whose manifest matches.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from vision_core.data.detection.coco import write_coco
from vision_core.data.detection.types import DetectionDataset, DetectionRecord
from vision_core.data.synthetic import SHAPE_CLASSES
from vision_core.logs import get_logger

log = get_logger()

DEMO_CLASSES = SHAPE_CLASSES + ("star", "ring")
MANIFEST = "manifest.json"
GENERATOR_VERSION = 1
_SPLIT_CODES = {"train": 0, "val": 1}
_SUBPIXEL = 4  # cv2.fillPoly fractional bits: vertices at 1/16 pixel


def _unit_circle(points: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _star() -> np.ndarray:
    t = np.linspace(-np.pi / 2, 1.5 * np.pi, 10, endpoint=False)
    radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


_ARM = 1 / 3
# Each class: (filled outlines, holes) in unit coordinates [-1, 1]^2, and its rotation range in degrees.
_SHAPES = {
    "circle": (([_unit_circle()], []), 90),
    "square": (([np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], float)], []), 15),
    "triangle": (([np.array([(0, -1), (1, 1), (-1, 1)], float)], []), 20),
    "cross": (
        (
            [
                np.array(
                    [
                        (-_ARM, -1),
                        (_ARM, -1),
                        (_ARM, -_ARM),
                        (1, -_ARM),
                        (1, _ARM),
                        (_ARM, _ARM),
                        (_ARM, 1),
                        (-_ARM, 1),
                        (-_ARM, _ARM),
                        (-1, _ARM),
                        (-1, -_ARM),
                        (-_ARM, -_ARM),
                    ],
                    float,
                )
            ],
            [],
        ),
        15,
    ),
    "star": (([_star()], []), 36),
    "ring": (([_unit_circle()], [0.55 * _unit_circle()]), 90),
}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: smooth colour noise, a linear gradient, or stripes, plus fine grain.

    Gradients and stripes are a 1-D profile rotated into place with ``cv2.warpAffine`` and
    coloured through a lookup table, which keeps a 320x320 background near a millisecond.
    """
    kind = rng.integers(3)
    if kind == 0:
        cells = int(rng.integers(3, 12))
        image = cv2.resize(
            rng.integers(20, 236, (cells, cells, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC
        )
    else:
        diagonal = int(np.ceil(size * np.sqrt(2))) + 2
        position = np.arange(diagonal, dtype=np.float32) / diagonal
        if kind == 1:
            profile = position
        else:
            period, duty = rng.uniform(0.03, 0.2), rng.uniform(0.25, 0.75)
            profile = ((position / period + rng.uniform()) % 1 < duty).astype(np.float32)
        strip = cv2.repeat((profile * 255).astype(np.uint8)[None], diagonal, 1)
        rotation = cv2.getRotationMatrix2D((diagonal / 2, diagonal / 2), rng.uniform(0, 180), 1.0)
        rotation[:, 2] -= (diagonal - size) / 2
        weight = cv2.warpAffine(strip, rotation, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        a, b = rng.uniform(20, 235, (2, 3))
        palette = (a + np.linspace(0, 1, 256)[:, None] * (b - a)).astype(np.uint8).reshape(256, 1, 3)
        image = cv2.LUT(cv2.merge([weight] * 3), palette)
    grain = rng.normal(0, rng.uniform(2, 10), (size // 2, size // 2)).astype(np.int16)
    grain = cv2.resize(grain, (size, size), interpolation=cv2.INTER_NEAREST)
    return cv2.add(image, cv2.merge([grain] * 3), dtype=cv2.CV_8U)


def _outline(rng: np.random.Generator, kind: str, width: float, height: float):
    """Filled outlines and holes of one shape in pixels around (0, 0), and their extent (x0, y0, x1, y1)."""
    (outlines, holes), max_degrees = _SHAPES[kind]
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    scale = np.array([width / 2, height / 2])
    outlines = [(p * scale) @ rotation.T for p in outlines]
    holes = [(p * scale) @ rotation.T for p in holes]
    points = np.concatenate(outlines)
    return outlines, holes, (*points.min(0), *points.max(0))


def draw_detection_scene(
    rng: np.random.Generator, size: int, max_objects: int = 8, min_size: float = 0.06, min_visible: float = 0.7
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One demo image: ``(image uint8 [size, size, 3] RGB, boxes float32 [N, 4], classes int32 [N])``.

    Boxes are xyxy absolute pixels (x_min, y_min, x_max, y_max), the extent of each shape's
    visible pixels; classes index :data:`DEMO_CLASSES`. Shape sides are log-uniform from
    ``min_size * size`` (at least 6 px) to ``size / 2``. Each shape keeps at least
    ``min_visible`` of its pixels; a shape that cannot be placed so is left out.
    """
    image = _background(rng, size)
    owner = np.full((size, size), -1, np.int16)
    areas, visible, labels, regions = [], np.zeros(0, np.int64), [], []
    smallest, largest = max(6.0, min_size * size), 0.5 * size
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(DEMO_CLASSES)))
        side = np.exp(rng.uniform(np.log(smallest), np.log(largest)))
        aspect = rng.uniform(0.7, 1.4)
        outlines, holes, (ex0, ey0, ex1, ey1) = _outline(
            rng, DEMO_CLASSES[label], side * aspect**0.5, side / aspect**0.5
        )
        colour = rng.uniform(0, 255, 3)
        for _attempt in range(10):
            cx = rng.uniform(-ex0, size - ex1)
            cy = rng.uniform(-ey0, size - ey1)
            left, top = max(int(np.floor(cx + ex0)), 0), max(int(np.floor(cy + ey0)), 0)
            right, bottom = min(int(np.ceil(cx + ex1)) + 1, size), min(int(np.ceil(cy + ey1)) + 1, size)
            mask = np.zeros((bottom - top, right - left), np.uint8)
            for points, value in [(p, 1) for p in outlines] + [(p, 0) for p in holes]:
                vertices = np.round((points + (cx - left, cy - top)) * (1 << _SUBPIXEL)).astype(np.int32)
                cv2.fillPoly(mask, [vertices], value, cv2.LINE_8, _SUBPIXEL)
            inside = mask.astype(bool)
            if inside.sum() < 4:
                break
            region = owner[top:bottom, left:right]
            covered = np.bincount(region[inside] + 1, minlength=len(areas) + 1)[1:]
            if np.all(visible - covered >= min_visible * np.array(areas)):
                patch = image[top:bottom, left:right]
                if np.abs(patch[inside].mean(0) - colour).sum() < 90:  # keep the shape visible on its background
                    colour = 255 - colour
                patch[inside] = colour.astype(np.uint8)
                region[inside] = len(areas)
                areas.append(int(inside.sum()))
                visible = np.append(visible - covered, areas[-1])
                labels.append(label)
                regions.append((left, top, right, bottom))
                break
    boxes = np.zeros((len(areas), 4), np.float32)
    for index, (left, top, right, bottom) in enumerate(regions):
        ys, xs = np.nonzero(owner[top:bottom, left:right] == index)
        boxes[index] = (left + xs.min(), top + ys.min(), left + xs.max() + 1, top + ys.max() + 1)
    return image, boxes, np.array(labels, np.int32)


def write_demo_dataset(
    root: str | os.PathLike,
    train: int = 1000,
    val: int = 200,
    size: int = 320,
    seed: int = 0,
    max_objects: int = 8,
    min_size: float = 0.06,
    min_visible: float = 0.7,
    image_format: str = "jpg",
) -> dict[str, Path]:
    """Write the demo dataset under ``root``; returns ``{"train": .../annotations.json, "val": ...}``.

    Layout: ``root/manifest.json`` and per split ``root/<split>/annotations.json`` (COCO: boxes
    xywh absolute pixels, categories 1..6 = :data:`DEMO_CLASSES`) with images in
    ``root/<split>/images/``. The folder is built beside ``root`` and renamed into place, so
    a crash never leaves half a dataset; when ``root`` already holds a dataset with the same
    manifest (every argument above) it is reused untouched. A folder that is not a demo
    dataset is never replaced.
    """
    root = Path(os.path.abspath(root))
    manifest = {
        "generator": __name__,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "max_objects": max_objects,
        "min_size": min_size,
        "min_visible": min_visible,
        "image_format": image_format,
        "splits": {"train": train, "val": val},
        "classes": list(DEMO_CLASSES),
    }
    paths = {split: root / split / "annotations.json" for split in manifest["splits"]}
    if _manifest(root) == manifest:
        return paths
    if root.exists() and any(root.iterdir()) and _manifest(root) is None:
        raise FileExistsError(f"{root}: exists and is not a demo dataset (no {MANIFEST}); choose another folder")

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
    staging.chmod(0o755)  # mkdtemp makes it private; the dataset is ordinary shared data
    try:
        for split, count in manifest["splits"].items():
            _write_split(staging / split, split, count, size, seed, max_objects, min_size, min_visible, image_format)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        _move_into_place(staging, root, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return paths


def _write_split(
    folder: Path,
    split: str,
    count: int,
    size: int,
    seed: int,
    max_objects: int,
    min_size: float,
    min_visible: float,
    image_format: str,
) -> None:
    (folder / "images").mkdir(parents=True)
    log.info("writing %d demo %s images to %s", count, split, folder)
    flags = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    records = []
    for index in range(count):
        rng = np.random.default_rng((seed, _SPLIT_CODES.get(split, 2), index))
        image, boxes, classes = draw_detection_scene(rng, size, max_objects, min_size, min_visible)
        path = folder / "images" / f"{index:06d}.{image_format}"
        ok, encoded = cv2.imencode(f".{image_format}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), flags)
        if not ok:
            raise ValueError(f"OpenCV cannot encode .{image_format} images")
        encoded.tofile(path)
        records.append(
            DetectionRecord(image_id=index + 1, path=path, boxes=boxes, classes=classes, width=size, height=size)
        )
    dataset = DetectionDataset(class_names=DEMO_CLASSES, records=records, split=split, root=folder, format="coco")
    write_coco(dataset, folder / "annotations.json")


def _manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _move_into_place(staging: Path, root: Path, manifest: dict) -> None:
    """Rename ``staging`` to ``root``; an older demo dataset there is swapped out and removed."""
    if root.exists() and not any(root.iterdir()):
        root.rmdir()
    old = None
    if root.exists():
        old = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.old-"))
        os.replace(root, old / root.name)
    try:
        os.rename(staging, root)
    except OSError:
        if _manifest(root) != manifest:  # another process may have written the same dataset meanwhile
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
