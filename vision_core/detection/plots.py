"""Pictures of a detector's results: drawn detections, precision-recall curves, a gallery.

Boxes come in as **xyxy absolute pixels of the image they are drawn on** (``Detections``,
``DetectionRecord.boxes``). Detections are drawn by the edge kit's
:func:`tflite.draw.draw_prediction` (a palette colour per class, label and score), so a
picture made here looks like one made on the device; ground truth is drawn in
:data:`GROUND_TRUTH_COLOUR`, thinner, on top. Curves use matplotlib's Agg canvas
directly (no pyplot state). Files are PNG, written atomically.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tflite.draw import draw_prediction
from tflite.predict import Prediction
from vision_core.data.detection.types import DetectionDataset
from vision_core.detection.detector_io import Detections
from vision_core.logs import get_logger
from vision_core.storage.atomic import write_atomic

log = get_logger()

GROUND_TRUTH_COLOUR = (255, 255, 255)  # white, the same in BGR and RGB; no colour of the edge kit's palette
TILE_BACKGROUND = 40


def class_name(class_names, index: int) -> str:
    """``class_names[index]``, or ``"class <index>"`` when there is no such name."""
    return class_names[index] if class_names is not None and 0 <= index < len(class_names) else f"class {index}"


def draw_detections(
    image: np.ndarray, detections: Detections, class_names=None, ground_truth: np.ndarray | None = None
) -> np.ndarray:
    """A BGR uint8 copy of RGB ``image`` [H, W, 3] (ready for ``cv2.imwrite`` / ``VideoWriter``).

    ``detections``: boxes xyxy pixels of ``image``, drawn with class name and score.
    ``ground_truth``: optional float [M, 4] xyxy pixels of ``image``, drawn on top in thin white lines.
    """
    labels = [
        {"index": int(c), "label": class_name(class_names, int(c)), "score": float(s), "box": [float(v) for v in box]}
        for box, c, s in zip(detections.boxes, detections.classes, detections.scores)
    ]
    canvas = draw_prediction(image, Prediction("detection", labels))
    for x_min, y_min, x_max, y_max in np.rint(
        np.asarray(ground_truth if ground_truth is not None else []).reshape(-1, 4)
    ).astype(int):
        cv2.rectangle(canvas, (x_min, y_min), (x_max, y_max), GROUND_TRUTH_COLOUR, 1)
    return canvas


def _png(figure_or_image) -> bytes:
    if isinstance(figure_or_image, Figure):
        buffer = io.BytesIO()
        FigureCanvasAgg(figure_or_image).print_png(buffer)
        return buffer.getvalue()
    ok, encoded = cv2.imencode(".png", figure_or_image)
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return encoded.tobytes()


def plot_pr_curves(metrics: dict, path: str | os.PathLike, title: str = "") -> Path:
    """Precision-recall curves at IoU .5 of every class with ground truth, and their mean, as a PNG.

    ``metrics``: the dict of :func:`vision_core.detection.evaluate.coco_evaluate` (its
    ``pr_curve`` and ``per_class``). The mean curve is the class mean at each recall
    threshold, whose average is ``mAP50``. Returns the written path.
    """
    curve = metrics["pr_curve"]
    recall = np.asarray(curve["recall"])
    figure = Figure(figsize=(7, 5), dpi=100)
    axes = figure.add_subplot()
    for name, precision in curve["precision"].items():
        axes.plot(recall, precision, linewidth=1, label=f"{name} AP50 {metrics['per_class'][name]['AP50']:.3f}")
    if curve["precision"]:
        mean = np.mean(list(curve["precision"].values()), axis=0)
        axes.plot(recall, mean, color="black", linewidth=2.5, label=f"mean AP50 {metrics['mAP50']:.3f}")
    axes.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=title or f"precision-recall at IoU {curve['iou']:g}",
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize="small")
    figure.tight_layout()
    return write_atomic(path, _png(figure))


def _tile(
    image: np.ndarray, detections: Detections, ground_truth: np.ndarray, class_names, tile_size: int
) -> np.ndarray:
    """One gallery cell, BGR [tile_size, tile_size, 3]: the image scaled to fit, centred, boxes drawn at that scale."""
    height, width = image.shape[:2]
    scale = tile_size / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    box_scale = np.array([size[0] / width, size[1] / height] * 2, np.float32)
    scaled = Detections(detections.boxes * box_scale, detections.classes, detections.scores)
    drawn = draw_detections(resized, scaled, class_names, np.asarray(ground_truth).reshape(-1, 4) * box_scale)
    tile = np.full((tile_size, tile_size, 3), TILE_BACKGROUND, np.uint8)
    top, left = (tile_size - size[1]) // 2, (tile_size - size[0]) // 2
    tile[top : top + size[1], left : left + size[0]] = drawn
    return tile


def save_gallery(
    dataset: DetectionDataset,
    detections: Mapping[int, Detections],
    path: str | os.PathLike,
    count: int = 16,
    columns: int = 4,
    tile_size: int = 256,
    score_threshold: float = 0.3,
) -> Path:
    """A grid PNG of the first ``count`` readable images of ``dataset`` that have detections listed.

    ``detections``: image id -> :class:`Detections` (xyxy pixels of that image), e.g.
    ``run_detector(...).by_image``; only those scoring ``>= score_threshold`` are drawn. Ground
    truth (white) comes from the records. Cells are ``tile_size`` squares, ``columns`` to a row;
    the image is ``(rows * tile_size, columns * tile_size)``. Returns the written path.
    """
    tiles = []
    for index, record in enumerate(dataset.records):
        if len(tiles) == count:
            break
        if record.image_id not in detections:
            continue
        try:
            image = dataset.sample(index)["image"]
        except OSError as error:
            log.warning("gallery: skipping %s: %s", record.path, error)
            continue
        found = detections[record.image_id]
        keep = found.scores >= score_threshold
        tiles.append(
            _tile(
                image,
                Detections(found.boxes[keep], found.classes[keep], found.scores[keep]),
                record.boxes,
                dataset.class_names,
                tile_size,
            )
        )
    if not tiles:
        raise ValueError(f"no readable image of {dataset.split} has detections to draw")
    rows = math.ceil(len(tiles) / columns)
    grid = np.full((rows * tile_size, columns * tile_size, 3), TILE_BACKGROUND, np.uint8)
    for i, tile in enumerate(tiles):
        row, column = divmod(i, columns)
        grid[row * tile_size : (row + 1) * tile_size, column * tile_size : (column + 1) * tile_size] = tile
    return write_atomic(path, _png(grid))
