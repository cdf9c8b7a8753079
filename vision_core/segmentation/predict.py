"""Segment image files and folders: colour overlays, index PNGs and one JSON of per-class pixel counts.

``predict_images(runner, sources, out_dir, ...)``: each source is an image file or a folder searched
recursively (:func:`vision_core.classification.predict.collect_images`). Each image is fed as
evaluation feeds it (bilinear stretch to the input, ``(pixels - mean) / std``) and its class map is
taken at the image's own size (:func:`~vision_core.segmentation.evaluate.class_maps`). Into
``out_dir`` go ``<stem>.jpg`` (the image with the class colours blended in), ``<stem>_mask.png``
(8-bit class indices, what the masks of a dataset hold) and ``predictions.json``::

    {"class_names": [...],
     "results": [{"file", "overlay", "mask", "width", "height", "pixels": {class name: count}}, ...],
     "skipped": {path: reason}, "counts": {"images", "skipped"}}

A file that cannot be read is logged with its name and reason, counted, and skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vision_core.classification.predict import collect_images
from vision_core.data.detection.images import read_image
from vision_core.logs import get_logger
from vision_core.segmentation.draw import overlay
from vision_core.segmentation.evaluate import class_maps
from vision_core.storage.atomic import write_atomic

log = get_logger()
RESULTS_FILE = "predictions.json"


def _encode(suffix: str, image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(suffix, image)
    if not ok:
        raise ValueError(f"OpenCV cannot encode {suffix} images")
    return encoded.tobytes()


def predict_images(
    runner,
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    class_names: Sequence[str],
    colors: np.ndarray,
    input_size: int,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    *,
    progress: bool = True,
) -> dict:
    """Segment the images of ``sources`` into ``out_dir`` (format in the module docstring).

    ``runner``: normalised images float32 [N, S, S, 3] -> scores [N, S, S, K]; ``colors``: uint8 [K, 3] RGB.
    Returns ``{"images": segmented, "skipped": unusable sources and unreadable files}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, skipped = collect_images(sources)
    for path, reason in skipped.items():
        log.warning("skipping %s: %s", path, reason)
    results, taken = [], {RESULTS_FILE}
    for path in tqdm(files, desc="predict", unit="image", disable=not progress):
        try:
            image = read_image(path)
        except OSError as error:
            skipped[str(path)] = str(error)
            log.warning("skipping %s", error)
            continue
        (class_map,) = class_maps(runner, [image], input_size, mean, std)
        stem, number = path.stem, 1
        while f"{stem}.jpg" in taken:
            number += 1
            stem = f"{path.stem}_{number}"
        taken.add(f"{stem}.jpg")
        write_atomic(
            out_dir / f"{stem}.jpg", _encode(".jpg", cv2.cvtColor(overlay(image, class_map, colors), cv2.COLOR_RGB2BGR))
        )
        write_atomic(out_dir / f"{stem}_mask.png", _encode(".png", class_map.astype(np.uint8)))
        counts = np.bincount(class_map.ravel(), minlength=len(class_names))
        results.append(
            {
                "file": str(path),
                "overlay": f"{stem}.jpg",
                "mask": f"{stem}_mask.png",
                "width": int(image.shape[1]),
                "height": int(image.shape[0]),
                "pixels": {name: int(count) for name, count in zip(class_names, counts)},
            }
        )
    counts = {"images": len(results), "skipped": len(skipped)}
    content = {"class_names": list(class_names), "results": results, "skipped": skipped, "counts": counts}
    write_atomic(out_dir / RESULTS_FILE, json.dumps(content, indent=1).encode())
    return counts
