"""Run a detector on images, folders and videos; write drawn results and one JSON.

``predict(runner, sources, out_dir)``: each source is an image, a video, or a folder (its
images and videos, sorted by name, not recursive; other files in it are ignored). Into
``out_dir`` go a drawn copy of each image (``<stem>.jpg``), an annotated ``<stem>.mp4`` (mp4v)
per video holding every ``frame_stride``-th frame, and ``predictions.json``::

    {"box_format": "xyxy pixels of the original image", "class_names": [...], "score_threshold": t,
     "results": [{"file", "frame" (videos only), "width", "height", "output",
                  "boxes": [[x_min, y_min, x_max, y_max], ...], "classes": [...], "names": [...],
                  "scores": [...]}, ...],
     "skipped": {path: reason}, "counts": {"images", "videos", "frames", "skipped"}}

A file that cannot be read (missing, corrupt image, video OpenCV cannot open or decode, a
listed file of another type) is logged with its name and reason, counted, and skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from vision_core.data.detection.images import IMAGE_EXTENSIONS, read_image
from vision_core.data.video import VIDEO_EXTENSIONS, VideoFrames, VideoOutput
from vision_core.detection.detector_io import Detections
from vision_core.detection.plots import class_name, draw_detections
from vision_core.logs import get_logger
from vision_core.storage.atomic import write_atomic

log = get_logger()

RESULTS_FILE = "predictions.json"
BOX_FORMAT = "xyxy pixels of the original image"


@dataclass
class PredictionReport:
    """What :func:`predict` did: the JSON's ``results`` and ``skipped``, its counts, and its path."""

    results: list[dict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    images: int = 0
    videos: int = 0
    frames: int = 0
    json_path: Path | None = None

    def counts(self) -> dict[str, int]:
        return {"images": self.images, "videos": self.videos, "frames": self.frames, "skipped": len(self.skipped)}


def collect_sources(sources, report: PredictionReport) -> list[Path]:
    """Images and videos of ``sources`` (files; folders expanded, sorted); the unusable go to ``report.skipped``."""
    files = []
    for source in [sources] if isinstance(sources, (str, os.PathLike)) else sources:
        path = Path(source)
        if path.is_dir():
            files += sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
            )
        elif not path.exists():
            _skip(report, path, "no such file or folder")
        elif path.suffix.lower() not in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
            _skip(report, path, f"not an image or video (suffix {path.suffix!r})")
        else:
            files.append(path)
    return files


def _skip(report: PredictionReport, path: Path, reason: str) -> None:
    report.skipped[str(path)] = reason
    log.warning("skipping %s: %s", path, reason)


def _entry(path: Path, detections: Detections, image_hw, class_names, output: str, frame: int | None = None) -> dict:
    entry = {"file": str(path)}
    if frame is not None:
        entry["frame"] = frame
    return {
        **entry,
        "width": int(image_hw[1]),
        "height": int(image_hw[0]),
        "output": output,
        "boxes": [[round(float(v), 2) for v in box] for box in detections.boxes],
        "classes": [int(c) for c in detections.classes],
        "names": [class_name(class_names, int(c)) for c in detections.classes],
        "scores": [round(float(s), 5) for s in detections.scores],
    }


def _above(detections: Detections, score_threshold: float) -> Detections:
    keep = detections.scores >= score_threshold
    return Detections(detections.boxes[keep], detections.classes[keep], detections.scores[keep])


def _output_path(out_dir: Path, source: Path, suffix: str, taken: set[str]) -> Path:
    """``out_dir/<stem><suffix>``, numbered ``<stem>_2`` ... when two sources share a stem."""
    name, number = f"{source.stem}{suffix}", 1
    while name in taken:
        number += 1
        name = f"{source.stem}_{number}{suffix}"
    taken.add(name)
    return out_dir / name


def _predict_image(runner, path: Path, out_path: Path, class_names, score_threshold: float) -> dict:
    image = read_image(path)
    detections = _above(runner(image), score_threshold)
    ok, encoded = cv2.imencode(out_path.suffix, draw_detections(image, detections, class_names))
    if not ok:
        raise ValueError(f"OpenCV could not encode {out_path.name}")
    write_atomic(out_path, encoded.tobytes())
    return _entry(path, detections, image.shape[:2], class_names, out_path.name)


def _predict_video(
    runner, path: Path, out_path: Path, class_names, score_threshold: float, frame_stride: int
) -> list[dict]:
    """Entries of every ``frame_stride``-th frame; the drawn frames go to ``out_path`` (mp4v), atomically."""
    entries = []
    with VideoFrames(path, stride=frame_stride) as video, VideoOutput(out_path, video.fps / frame_stride) as output:
        for index, image in video:
            detections = _above(runner(image), score_threshold)
            output.write(draw_detections(image, detections, class_names), bgr=True)
            entries.append(_entry(path, detections, image.shape[:2], class_names, out_path.name, index))
    return entries


def predict(
    runner,
    sources,
    out_dir: str | os.PathLike,
    *,
    class_names=None,
    score_threshold: float = 0.3,
    frame_stride: int = 1,
    progress: bool = True,
) -> PredictionReport:
    """Detect on ``sources`` (paths of images, videos, folders) and write results to ``out_dir``.

    Args:
        runner: image uint8 [H, W, 3] RGB -> ``Detections`` (xyxy pixels of that image), e.g. from
            :func:`vision_core.detection.runners.load_runner`.
        class_names: names of the class ids; default the runner's own (TFLite metadata), else ``"class <id>"``.
        score_threshold: detections scoring below it are neither drawn nor listed.
        frame_stride: run on every n-th video frame (the written video holds those frames, at fps / n).

    Returns:
        A :class:`PredictionReport`; the JSON is at ``report.json_path`` (format in the module docstring).
    """
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    class_names = class_names if class_names is not None else getattr(runner, "class_names", None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report, taken = PredictionReport(), {RESULTS_FILE}
    for path in tqdm(collect_sources(sources, report), desc="predict", unit="file", disable=not progress):
        is_video = path.suffix.lower() in VIDEO_EXTENSIONS
        out_path = _output_path(out_dir, path, ".mp4" if is_video else ".jpg", taken)
        try:
            if is_video:
                entries = _predict_video(runner, path, out_path, class_names, score_threshold, frame_stride)
                report.videos += 1
                report.frames += len(entries)
                report.results += entries
            else:
                report.results.append(_predict_image(runner, path, out_path, class_names, score_threshold))
                report.images += 1
        except OSError as error:  # missing, corrupt or truncated image; unreadable video
            _skip(report, path, str(error))
    names = list(class_names) if class_names is not None else None
    content = {
        "box_format": BOX_FORMAT,
        "class_names": names,
        "score_threshold": score_threshold,
        "results": report.results,
        "skipped": report.skipped,
        "counts": report.counts(),
    }
    report.json_path = write_atomic(out_dir / RESULTS_FILE, json.dumps(content, indent=1).encode())
    return report
