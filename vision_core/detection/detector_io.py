"""What goes into and comes out of every form of a detector (Keras, TFLite, ONNX): one mapping each way.

In: :meth:`DetectorInput.pixels` brings an RGB uint8 image to the model input with the
albumentations steps of :func:`vision_core.data.detection.augment.resize_to_input`, the
same steps ``val_transform`` runs in training, and :func:`normalize` maps pixels to
``[-1, 1]`` with :func:`vision_core.data.detection.pipeline.to_minus_one_one`, the
training pipeline's own function. So every form sees the input training saw.

Resize mode: ``"stretch"`` by default (both sides to the input, aspect ratio ignored). That
is what MediaPipe Tasks does with an exported detector and what the edge kit
(``tflite/predict.py``) does, so the numbers measured here are the numbers a device gets.
``"letterbox"`` is there for models trained letterboxed.

Out: every form returns the four outputs of ``TFLite_Detection_PostProcess`` (see
:mod:`vision_core.detection.export_tail`): ``boxes [1, D, 4]`` as ``(ymin, xmin, ymax, xmax)``
normalised to the model input, ``classes [1, D]``, ``scores [1, D]``, ``num_detections [1]``.
:meth:`DetectorInput.detections` turns them into :class:`Detections`: **xyxy absolute
pixels of the original image** (x_min, y_min, x_max, y_max).

Class ids: the op's ``classes`` already exclude background. An SSD-style head whose raw
scores have column 0 = background feeds ``C = num_classes + 1`` columns and the op skips the
leading ``C - num_classes`` of them (``nms.tflite_detection_postprocess``), so output class 0
is the first real class, the same 0-based id as the dataset's (no background id anywhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import numpy as np

from vision_core.data.detection.augment import (
    RESIZE_MODES,
    boxes_to_image,
    resize_to_input,
)
from vision_core.data.detection.pipeline import to_minus_one_one


@dataclass(frozen=True)
class Detections:
    """One image's detections, best score first.

    Attributes:
        boxes: float32 [N, 4], xyxy absolute pixels of the original image, clipped to it.
        classes: int32 [N], class ids 0..K-1 (no background id).
        scores: float32 [N].
    """

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "boxes", np.asarray(self.boxes, np.float32).reshape(-1, 4))
        object.__setattr__(self, "classes", np.asarray(self.classes, np.int32).reshape(-1))
        object.__setattr__(self, "scores", np.asarray(self.scores, np.float32).reshape(-1))
        if not len(self.boxes) == len(self.classes) == len(self.scores):
            raise ValueError(f"{len(self.boxes)} boxes, {len(self.classes)} classes and {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,)))


def normalize(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 ``x / 127.5 - 1`` in [-1, 1] (``pipeline.to_minus_one_one``)."""
    return to_minus_one_one(pixels).numpy()


class DetectorInput:
    """The resize to a detector's input and the way back for its boxes.

    Args:
        input_size: the model input (height, width).
        mode: ``"stretch"`` (default, as MediaPipe) or ``"letterbox"``; see the module docstring.
    """

    def __init__(self, input_size: tuple[int, int], mode: str = "stretch"):
        if mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {mode!r}: expected one of {', '.join(RESIZE_MODES)}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.mode = mode
        self._resize = A.Compose(resize_to_input(self.input_size, mode))

    def pixels(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> the resized uint8 batch [1, h, w, 3] (not yet normalised)."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} {image.shape}")
        return self._resize(image=image)["image"][None]

    def detections(
        self, outputs: dict[str, np.ndarray], image_hw: tuple[int, int], score_threshold: float = 0.0
    ) -> Detections:
        """The post-process op's outputs (see the module docstring) -> :class:`Detections` of the original image.

        Keeps the first ``num_detections`` rows with ``score >= score_threshold``; boxes are clipped
        to the model input (an untrained head decodes coordinates up to ~1e38, which would overflow
        once scaled to pixels), mapped back through the resize, clipped to the image, and dropped
        when nothing of them is left. The input covers the whole image, so the first clip changes
        no box the second keeps.
        """
        count = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
        boxes = np.clip(np.asarray(outputs["boxes"], np.float32)[0, :count], 0.0, 1.0)
        classes = np.rint(np.asarray(outputs["classes"], np.float32)[0, :count])
        scores = np.asarray(outputs["scores"], np.float32)[0, :count]
        height, width = self.input_size
        input_xyxy = boxes[:, [1, 0, 3, 2]] * np.array([width, height, width, height], np.float32)
        xyxy = boxes_to_image(input_xyxy, image_hw, self.input_size, self.mode)
        xyxy = np.clip(xyxy, 0, [image_hw[1], image_hw[0], image_hw[1], image_hw[0]])
        keep = (scores >= score_threshold) & (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        order = np.argsort(-scores[keep], kind="stable")
        return Detections(xyxy[keep][order], classes[keep][order], scores[keep][order])
