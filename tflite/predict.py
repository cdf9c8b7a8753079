"""Run an exported model on images: preprocess as its metadata says, post-process by task.

Images are read with OpenCV, converted BGR -> RGB and stretched to the input size (as
MediaPipe does, no letterbox). uint8-input models take the pixels as they are (their
input quantization normalises); other models take ``(pixel - mean) / std``. Outputs
are read by signature name through the roles in the metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tflite.errors import EdgeKitError
from tflite.metadata import read_metadata
from tflite.model_file import load_model
from tflite.runtime import TFLiteModel


def read_image(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` of an image file; :class:`EdgeKitError` naming the file if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise EdgeKitError(f"{path}: no such image file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgeKitError(f"{path}: not a readable image (OpenCV cannot decode it)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass
class Prediction:
    """One image's result.

    ``labels``: dicts ``{"index", "label", "score"}``, best first. Classification: every
    class. Detection: one per box above the threshold, with ``box`` ``[x_min, y_min,
    x_max, y_max]`` in pixels of the original image. Segmentation: every class present,
    ``score`` being its fraction of the pixels. ``class_map``: segmentation only, the
    label index of each pixel ``[H, W]`` at the original image size.
    """

    task: str
    labels: list[dict]
    class_map: np.ndarray | None = None

    def as_dict(self, top_k: int | None = None) -> dict:
        return {"task": self.task, "labels": self.labels[:top_k]}


class Predictor:
    """An exported model (path or bytes) with its metadata, called on RGB uint8 images."""

    def __init__(
        self, model: bytes | str | os.PathLike, num_threads: int | None = None, score_threshold: float = 0.3
    ) -> None:
        self.data, self.source = load_model(model)
        self.info = read_metadata(model)
        self.model = TFLiteModel(self.data, num_threads=num_threads)
        self.score_threshold = score_threshold

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """Float32 ``[1, H, W, 3]`` model input; for uint8 models, the float value each pixel stands for."""
        height, width = self.info.input_size
        pixels = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        if self.model.input_dtype == np.uint8:
            # TFLiteModel quantizes this back to exactly the pixel values.
            scale, zero_point = self.model.inputs[self.model.input_name]["quantization"]
            return ((pixels - zero_point) * scale)[None]
        return ((pixels - np.float32(self.info.mean)) / np.float32(self.info.std))[None]

    def __call__(self, image: np.ndarray) -> Prediction:
        outputs = self.model(self.preprocess(image))
        by_role = {role: outputs[name] for role, name in self.info.outputs.items()}
        postprocess = {
            "classification": self._classification,
            "detection": self._detection,
            "segmentation": self._segmentation,
        }[self.info.task]
        return postprocess(by_role, image.shape[:2])

    def _label(self, index: int) -> str:
        return self.info.labels[index] if 0 <= index < len(self.info.labels) else f"class {index}"

    def _classification(self, outputs: dict[str, np.ndarray], image_size: tuple[int, ...]) -> Prediction:
        scores = outputs["probabilities"][0]
        order = np.argsort(-scores, kind="stable")
        return Prediction(
            "classification",
            [{"index": int(i), "label": self._label(int(i)), "score": float(scores[i])} for i in order],
        )

    def _detection(self, outputs: dict[str, np.ndarray], image_size: tuple[int, ...]) -> Prediction:
        height, width = image_size
        count = int(outputs["num_detections"].reshape(-1)[0])
        labels = []
        for box, index, score in zip(
            outputs["boxes"][0][:count], outputs["classes"][0][:count], outputs["scores"][0][:count]
        ):
            if score >= self.score_threshold:
                y_min, x_min, y_max, x_max = np.clip(box, 0.0, 1.0) * [height, width, height, width]
                labels.append(
                    {
                        "index": int(index),
                        "label": self._label(int(index)),
                        "score": float(score),
                        "box": [float(x_min), float(y_min), float(x_max), float(y_max)],
                    }
                )
        labels.sort(key=lambda d: -d["score"])
        return Prediction("detection", labels)

    def _segmentation(self, outputs: dict[str, np.ndarray], image_size: tuple[int, ...]) -> Prediction:
        height, width = image_size
        class_map = np.argmax(outputs["masks"][0], axis=-1).astype(np.uint16)
        class_map = cv2.resize(class_map, (width, height), interpolation=cv2.INTER_NEAREST)
        indices, counts = np.unique(class_map, return_counts=True)
        labels = [
            {"index": int(i), "label": self._label(int(i)), "score": float(c / class_map.size)}
            for i, c in zip(indices, counts)
        ]
        labels.sort(key=lambda d: -d["score"])
        return Prediction("segmentation", labels, class_map)
