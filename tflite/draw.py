"""Draw a :class:`tflite.predict.Prediction` on its image with OpenCV.

Classification: the top labels as text. Detection: each box ``[x_min, y_min, x_max,
y_max]`` (pixels) with its label and score. Segmentation: a colour per label blended
over the image. Colours come from a fixed palette, the same label always the same colour.
"""

from __future__ import annotations

import cv2
import numpy as np

from tflite.predict import Prediction

PALETTE = np.random.default_rng(0).integers(64, 256, size=(256, 3), dtype=np.uint8)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _colour(index: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in PALETTE[index % len(PALETTE)])


def _text(image: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int]) -> None:
    scale = max(0.35, min(image.shape[:2]) / 600)
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, 1)
    x, y = origin
    y = max(y, height + baseline)
    cv2.rectangle(image, (x, y - height - baseline), (x + width, y), colour, -1)
    cv2.putText(image, text, (x, y - baseline), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def draw_prediction(image: np.ndarray, prediction: Prediction, top_k: int = 3) -> np.ndarray:
    """A BGR uint8 copy of RGB ``image`` with ``prediction`` drawn on it (ready for ``cv2.imwrite``)."""
    canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if prediction.task == "segmentation":
        colours = PALETTE[prediction.class_map % len(PALETTE)][..., ::-1]
        canvas = cv2.addWeighted(canvas, 0.5, colours, 0.5, 0.0)
    line_height = max(12, min(image.shape[:2]) // 20)
    for rank, label in enumerate(prediction.labels[:top_k] if prediction.task != "detection" else prediction.labels):
        caption = f"{label['label']} {label['score']:.2f}"
        if prediction.task == "detection":
            x_min, y_min, x_max, y_max = (int(round(v)) for v in label["box"])
            cv2.rectangle(canvas, (x_min, y_min), (x_max, y_max), _colour(label["index"]), 2)
            _text(canvas, caption, (x_min, y_min), _colour(label["index"]))
        else:
            _text(canvas, caption, (0, (rank + 1) * line_height), _colour(label["index"]))
    return canvas
