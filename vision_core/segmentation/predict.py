"""Segment image and video files and folders: colour overlays, index PNGs and one JSON of per-class pixel counts.

``predict_sources(runner, sources, out_dir, ...)``: each source is an image or video file
(:data:`~vision_core.data.video.VIDEO_EXTENSIONS`) or a folder searched recursively for them
(:func:`vision_core.classification.predict.collect_images`). Each image and each video frame is fed
as evaluation feeds it (bilinear stretch to the input, ``(pixels - mean) / std``) and its class map
is taken at its own size (:func:`~vision_core.segmentation.evaluate.class_maps`). Into ``out_dir``
go, per image, ``<stem>.jpg`` (the image with the class colours blended in) and ``<stem>_mask.png``
(8-bit class indices, what the masks of a dataset hold); per video, ``<stem>.mp4`` (every frame's
overlay, mp4v, the source's frame rate, written through a hidden partial file renamed when complete);
and ``predictions.json``::

    {"class_names": [...],
     "results": [{"file", "overlay", "mask" (images only), "frame" (videos only), "width", "height",
                  "pixels": {class name: count}}, ...],          # one entry per image and per video frame
     "skipped": {path: reason}, "counts": {"images", "videos", "frames", "skipped"}}

A file that cannot be read (a corrupt image, a video OpenCV cannot open or decode) is logged with
its name and reason, counted, and skipped.
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
from vision_core.data.detection.images import IMAGE_EXTENSIONS, read_image
from vision_core.data.video import VIDEO_EXTENSIONS, VideoFrames, VideoOutput
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


def _output_stem(source: Path, suffix: str, taken: set[str]) -> str:
    """``source``'s stem, numbered ``<stem>_2`` ... when another source already took ``<stem><suffix>``."""
    stem, number = source.stem, 1
    while f"{stem}{suffix}" in taken:
        number += 1
        stem = f"{source.stem}_{number}"
    taken.add(f"{stem}{suffix}")
    return stem


class _Segmenter:
    """uint8 RGB image -> ``(class map int32 [H, W], its overlay uint8 RGB, {class name: pixel count})``."""

    def __init__(self, runner, class_names, colors, input_size, mean, std):
        self.runner, self.class_names, self.colors = runner, list(class_names), colors
        self.input_size, self.mean, self.std = input_size, mean, std

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        (class_map,) = class_maps(self.runner, [image], self.input_size, self.mean, self.std)
        counts = np.bincount(class_map.ravel(), minlength=len(self.class_names))
        pixels = {name: int(count) for name, count in zip(self.class_names, counts)}
        return class_map, overlay(image, class_map, self.colors), pixels


def _image(segment: _Segmenter, path: Path, out_dir: Path, taken: set[str]) -> dict:
    image = read_image(path)
    class_map, drawn, pixels = segment(image)
    stem = _output_stem(path, ".jpg", taken)
    write_atomic(out_dir / f"{stem}.jpg", _encode(".jpg", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)))
    write_atomic(out_dir / f"{stem}_mask.png", _encode(".png", class_map.astype(np.uint8)))
    size = {"width": int(image.shape[1]), "height": int(image.shape[0])}
    return {"file": str(path), "overlay": f"{stem}.jpg", "mask": f"{stem}_mask.png", **size, "pixels": pixels}


def _video(segment: _Segmenter, path: Path, out_dir: Path, taken: set[str], progress: bool) -> list[dict]:
    name = f"{_output_stem(path, '.mp4', taken)}.mp4"
    entries = []
    with VideoFrames(path, progress=progress) as video, VideoOutput(out_dir / name, video.fps) as output:
        for index, frame in video:
            _, drawn, pixels = segment(frame)
            output.write(drawn)
            size = {"width": int(frame.shape[1]), "height": int(frame.shape[0])}
            entries.append({"file": str(path), "overlay": name, "frame": index, **size, "pixels": pixels})
    return entries


def predict_sources(
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
    """Segment the images and videos of ``sources`` into ``out_dir`` (format in the module docstring).

    ``runner``: normalised images float32 [N, S, S, 3] -> scores [N, S, S, K]; ``colors``: uint8 [K, 3] RGB.
    Returns the counts ``{"images", "videos", "frames", "skipped"}`` (skipped: unusable sources and files).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, skipped = collect_images(sources, IMAGE_EXTENSIONS + VIDEO_EXTENSIONS, "an image or video")
    for path, reason in skipped.items():
        log.warning("skipping %s: %s", path, reason)
    segment = _Segmenter(runner, class_names, colors, input_size, mean, std)
    results, taken = [], {RESULTS_FILE}
    counts = {"images": 0, "videos": 0, "frames": 0}
    for path in tqdm(files, desc="predict", unit="file", disable=not progress):
        try:
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                entries = _video(segment, path, out_dir, taken, progress)
                results += entries
                counts["videos"] += 1
                counts["frames"] += len(entries)
            else:
                results.append(_image(segment, path, out_dir, taken))
                counts["images"] += 1
        except OSError as error:  # a missing or corrupt image, an unreadable video
            skipped[str(path)] = str(error)
            log.warning("skipping %s", error)
    counts["skipped"] = len(skipped)
    content = {"class_names": list(class_names), "results": results, "skipped": skipped, "counts": counts}
    write_atomic(out_dir / RESULTS_FILE, json.dumps(content, indent=1).encode())
    return counts
