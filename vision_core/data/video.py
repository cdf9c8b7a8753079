"""Video files frame by frame: read with OpenCV as RGB, written as mp4v through a partial file renamed when complete.

Every app's ``predict`` on videos is the same loop around its own model::

    with VideoFrames(path, progress=True) as video, VideoOutput(out_path, video.fps) as output:
        for index, frame in video:          # RGB uint8 [H, W, 3]
            output.write(draw(frame, model(frame)))

:class:`VideoFrames` raises :class:`UnreadableVideoError` naming the file when OpenCV cannot open
the video or decode a single frame of it. :class:`VideoOutput` writes into a hidden
``.<stem>.partial<suffix>`` beside ``out_path`` (OpenCV picks the container from the suffix) and
renames it to ``out_path`` only when the block ends without an error and with at least one frame; an
error removes the partial file, so a failed run leaves nothing under the final name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
DEFAULT_FPS = 25.0  # when the container does not say


class UnreadableVideoError(OSError):
    """OpenCV cannot open the video or decode any frame of it."""


class VideoFrames:
    """The frames of one video file, in order: ``for index, frame in VideoFrames(path)``.

    ``fps``: the container's frame rate (:data:`DEFAULT_FPS` when it has none); ``frame_count``: the
    container's frame count, or None when unknown. ``stride``: yield every n-th frame (``index`` still
    counts every decoded frame). ``progress``: a tqdm bar of decoded frames with the achieved frames per
    second. Iterate once; use it as a context manager (or call :meth:`close`) to release the file.
    """

    def __init__(self, path: str | os.PathLike, *, stride: int = 1, progress: bool = False):
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.path = Path(path)
        self.stride, self.progress = stride, progress
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            raise UnreadableVideoError(f"{self.path}: OpenCV cannot open the video")
        self.fps = self._capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(frame index, RGB uint8 [H, W, 3])`` of every ``stride``-th frame; :class:`UnreadableVideoError`
        after the loop when no frame could be decoded."""
        index, start = 0, time.perf_counter()
        with tqdm(total=self.frame_count, desc=self.path.name, unit="frame", disable=not self.progress) as bar:
            while True:
                ok, frame = self._capture.read()
                if not ok:
                    break
                if index % self.stride == 0:
                    yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                index += 1
                bar.update()
                bar.set_postfix(fps=f"{index / (time.perf_counter() - start):.1f}", refresh=False)
        if not index:
            raise UnreadableVideoError(f"{self.path}: no decodable frame")

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class VideoOutput:
    """An mp4v video at ``path`` and ``fps``, written atomically (module docstring); the frame size is the
    first frame's. ``frames``: the frames written so far."""

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path = Path(path)
        self.fps = fps
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame: np.ndarray, *, bgr: bool = False) -> None:
        """Append ``frame`` uint8 [H, W, 3], RGB (or BGR, as OpenCV draws, with ``bgr=True``)."""
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            size = (frame.shape[1], frame.shape[0])
            self._writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not self._writer.isOpened():
                raise OSError(f"{self.partial}: OpenCV cannot write an mp4v video here")
        self._writer.write(frame if bgr else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def __enter__(self) -> VideoOutput:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if self._writer is not None:
            self._writer.release()
        if exc_type is None and self.frames:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)
