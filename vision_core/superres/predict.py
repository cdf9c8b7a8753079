"""Super-resolution of images, folders and videos with any form of a model (an :class:`SRRunner`).

Colour: an ``rgb`` model upscales the three channels; a ``y`` model upscales the BT.601 Y channel and
Cb/Cr are upscaled by OpenCV's bicubic (``cv2.INTER_CUBIC``, fast enough for video), then converted
back to RGB. Images are written as ``<out>/<name>_x<scale>.png`` (lossless); videos are read and
written by OpenCV (``<out>/<name>_x<scale>.mp4``, mp4v, the source's frame rate, no audio) through a
hidden partial file renamed when complete. A progress bar shows the achieved frames per second;
the report gives them per video, end to end (decode + model + colour + encode) and for the model alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from vision_core.data.detection.images import UnreadableImageError, read_image
from vision_core.data.superres.colour import RGB_TO_YCBCR, YCBCR_OFFSET
from vision_core.data.superres.pipeline import ColourMode, to_model_pixels
from vision_core.data.video import VIDEO_EXTENSIONS, UnreadableVideoError, VideoFrames, VideoOutput
from vision_core.detection.predict import PredictionReport, collect_sources
from vision_core.logs import get_logger
from vision_core.storage.atomic import write_atomic
from vision_core.superres.runners import SRRunner

log = get_logger()
RESULTS_FILE = "predictions.json"


def _affine(matrix: np.ndarray, offset: np.ndarray, before: bool) -> np.ndarray:
    """The 3x4 ``cv2.transform`` matrix of ``x @ matrix + offset`` (``before``: ``(x - offset) @ matrix``)."""
    linear = matrix.T.astype(np.float32)
    shift = -(linear @ offset.astype(np.float32)) if before else offset.astype(np.float32)
    return np.concatenate([linear, shift[:, None]], 1)


RGB_TO_YCBCR_AFFINE = _affine(RGB_TO_YCBCR / 255.0, YCBCR_OFFSET, before=False)
YCBCR_TO_RGB_AFFINE = _affine(np.linalg.inv(RGB_TO_YCBCR / 255.0), YCBCR_OFFSET, before=True)


def _pixels(image: np.ndarray) -> np.ndarray:
    """float32 0..255 values rounded and clipped to uint8 (in place)."""
    np.clip(image, 0, 255, out=image)
    return (image + 0.5).astype(np.uint8)


class Upscaler:
    """uint8 RGB ``[h, w, 3]`` -> uint8 RGB ``[h*s, w*s, 3]`` with ``runner``; times the model alone.

    The BT.601 conversions run as float32 ``cv2.transform`` (video frames are 2 megapixels at 1080p).
    """

    def __init__(self, runner: SRRunner, colour: ColourMode):
        self.runner, self.colour = runner, colour
        self.model_seconds = 0.0

    def _model(self, image: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        output = self.runner(image)
        self.model_seconds += time.perf_counter() - start
        return output

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.colour == "rgb":
            return _pixels(self._model(to_model_pixels(rgb, "rgb")) * np.float32(255.0))
        ycbcr = cv2.transform(rgb.astype(np.float32), RGB_TO_YCBCR_AFFINE)
        y = self._model(np.round(ycbcr[..., :1]) / np.float32(255.0))[..., 0] * np.float32(255.0)
        chroma = cv2.resize(ycbcr[..., 1:], (y.shape[1], y.shape[0]), interpolation=cv2.INTER_CUBIC)
        merged = np.concatenate([np.clip(y, 0, 255)[..., None], chroma], -1)
        return _pixels(cv2.transform(merged, YCBCR_TO_RGB_AFFINE))


def _encode_png(path: Path, rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("OpenCV cannot encode PNG images")
    write_atomic(path, encoded.tobytes())


def _video(upscale: Upscaler, path: Path, out_dir: Path) -> dict[str, Any]:
    upscale.model_seconds = 0.0
    start = time.perf_counter()
    with VideoFrames(path, progress=True) as video, contextlib.ExitStack() as outputs:
        output = None
        for _, frame in video:
            upscaled = upscale(frame)
            if output is None:  # the file is named by the scale, known from the first frame
                scale = upscaled.shape[0] // frame.shape[0]
                output = outputs.enter_context(VideoOutput(out_dir / f"{path.stem}_x{scale}.mp4", video.fps))
            output.write(upscaled)
    seconds = time.perf_counter() - start
    return {
        "source": str(path),
        "output": output.path.name,
        "frames": output.frames,
        "end_to_end_fps": output.frames / seconds,
        "model_fps": output.frames / upscale.model_seconds,
    }


def predict_sources(runner: SRRunner, sources, out_dir: str | os.PathLike, colour: ColourMode) -> dict[str, Any]:
    """Upscale every image and video of ``sources`` (files or folders) into ``out_dir``; write and return the
    report (``results``, ``skipped``, counts) as ``out_dir/predictions.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = PredictionReport()
    upscale = Upscaler(runner, colour)
    files = collect_sources(sources, report)
    images = [p for p in files if p.suffix.lower() not in VIDEO_EXTENSIONS]
    for path in tqdm(images, desc="upscale images", unit="image", disable=not images):
        try:
            rgb = read_image(path)
        except (UnreadableImageError, OSError) as error:
            report.skipped[str(path)] = str(error)
            continue
        output = upscale(rgb)
        scale = output.shape[0] // rgb.shape[0]
        _encode_png(out_dir / f"{path.stem}_x{scale}.png", output)
        report.results.append({"source": str(path), "output": f"{path.stem}_x{scale}.png"})
        report.images += 1
    for path in (p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS):
        try:
            entry = _video(upscale, path, out_dir)
        except UnreadableVideoError as error:
            report.skipped[str(path)] = str(error)
            continue
        log.info("%s: %d frames, %.1f fps end to end, %.1f fps model", path, entry["frames"],
                 entry["end_to_end_fps"], entry["model_fps"])  # fmt: skip
        report.results.append(entry)
        report.videos += 1
        report.frames += entry["frames"]
    result = {**report.counts(), "results": report.results, "skipped": report.skipped}
    write_atomic(out_dir / RESULTS_FILE, json.dumps(result, indent=2).encode())
    return result
