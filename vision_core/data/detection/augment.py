"""Box-aware augmentation (albumentations 2.0.8) and the resize to the model input.

Boxes go in and come out as **xyxy absolute pixels, float32 [N, 4] = (x_min, y_min, x_max,
y_max)** (albumentations' ``pascal_voc`` format), always in the frame of the image the
transform returns, i.e. the model input. Class ids int32 [N] travel as the ``classes``
label field, so a box dropped by a crop takes its class with it.

Two ways to reach the input size (``mode``):

* ``"stretch"`` (default): resize both sides to the input, ignoring the aspect ratio. This is
  what MediaPipe Tasks does to an exported detector's input, so training sees what the
  device will see.
* ``"letterbox"``: scale the longer side to fit, pad the rest with mid-grey, centred.

:func:`boxes_to_image` maps boxes predicted on the model input back to the original image.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

RESIZE_MODES = ("stretch", "letterbox")
PAD_COLOUR = (127, 127, 127)  # mid-grey: about 0 after the suite's x / 127.5 - 1


def _input_hw(input_size: int | tuple[int, int]) -> tuple[int, int]:
    return (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))


def resize_to_input(input_size: int | tuple[int, int], mode: str = "stretch") -> list[A.BasicTransform]:
    """The albumentations steps that bring any image to ``input_size`` ((height, width) or a side)."""
    height, width = _input_hw(input_size)
    if mode == "stretch":
        return [A.Resize(height, width)]
    if mode == "letterbox":
        return [
            A.LongestMaxSize(max_size_hw=(height, width)),
            A.PadIfNeeded(
                min_height=height, min_width=width, position="center", border_mode=cv2.BORDER_CONSTANT, fill=PAD_COLOUR
            ),
        ]
    raise ValueError(f"unknown resize mode {mode!r}: expected one of {', '.join(RESIZE_MODES)}")


def _bbox_params(min_visibility: float = 0.0, min_box_size: float = 0.0) -> A.BboxParams:
    # clip: boxes a rounding step past the edge are clipped, not rejected
    return A.BboxParams(
        format="pascal_voc",
        label_fields=["classes"],
        min_visibility=min_visibility,
        min_width=min_box_size,
        min_height=min_box_size,
        clip=True,
    )


def train_transform(
    input_size: int | tuple[int, int],
    mode: str = "stretch",
    crop_probability: float = 0.8,
    crop_scale: tuple[float, float] = (0.3, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_probability: float = 0.5,
    colour_jitter: float = 0.3,
    min_visibility: float = 0.3,
    min_box_size: float = 2.0,
    seed: int | None = None,
) -> A.Compose:
    """Training augmentation: random resized crop, resize to the input, horizontal flip, colour jitter.

    Args:
        input_size: model input (height, width), or one side for a square input.
        mode: "stretch" or "letterbox" for images the crop leaves alone (see the module docstring).
        crop_probability: chance of a random crop covering ``crop_scale`` of the image area with
            aspect ``crop_ratio``, resized to the input (objects grow, small ones become learnable).
        flip_probability: chance of a horizontal flip.
        colour_jitter: brightness, contrast and saturation vary by up to this fraction; hue by a sixth of it.
        min_visibility: a box keeping less than this fraction of its area after cropping is dropped.
        min_box_size: boxes narrower or lower than this many input pixels are dropped.
        seed: seeds albumentations' generators (one pipeline per worker gives reproducible streams).

    Returns:
        ``transform(image=uint8 HxWx3, bboxes=float32 [N, 4] xyxy pixels, classes=int32 [N])``;
        call it through :func:`apply_transform`.
    """
    height, width = _input_hw(input_size)
    return A.Compose(
        [
            A.RandomResizedCrop(size=(height, width), scale=crop_scale, ratio=crop_ratio, p=crop_probability),
            *resize_to_input((height, width), mode),
            A.HorizontalFlip(p=flip_probability),
            A.ColorJitter(
                brightness=colour_jitter, contrast=colour_jitter, saturation=colour_jitter, hue=colour_jitter / 6, p=0.8
            ),
        ],
        bbox_params=_bbox_params(min_visibility, min_box_size),
        seed=seed,
    )


def val_transform(input_size: int | tuple[int, int], mode: str = "stretch") -> A.Compose:
    """Evaluation preprocessing: only the resize to the input (``mode``: "stretch" or "letterbox")."""
    return A.Compose(resize_to_input(input_size, mode), bbox_params=_bbox_params())


def apply_transform(
    transform: A.Compose, image: np.ndarray, boxes: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``transform`` on one sample.

    Args:
        image: uint8 [H, W, 3] RGB; boxes: float32 [N, 4] xyxy absolute pixels, inside the
            image and with positive area (see ``pipeline.sanitize_boxes``); classes: int32 [N].

    Returns:
        ``(image uint8 [h, w, 3], boxes float32 [M, 4] xyxy pixels of that image, classes int32 [M])``, M <= N.
    """
    out = transform(
        image=image, bboxes=np.asarray(boxes, np.float32).reshape(-1, 4), classes=np.asarray(classes, np.int32)
    )
    return (
        out["image"],
        np.asarray(out["bboxes"], np.float32).reshape(-1, 4),
        np.asarray(out["classes"], np.int32).reshape(-1),
    )


def letterbox_geometry(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(resized height, resized width, pad top, pad left)`` of letterboxing, as albumentations does it."""
    scale = min(input_hw[0] / image_hw[0], input_hw[1] / image_hw[1])
    resized_h, resized_w = max(1, round(image_hw[0] * scale)), max(1, round(image_hw[1] * scale))
    return resized_h, resized_w, max(0, input_hw[0] - resized_h) // 2, max(0, input_hw[1] - resized_w) // 2


def boxes_to_image(
    boxes: np.ndarray, image_hw: tuple[int, int], input_size: int | tuple[int, int], mode: str = "stretch"
) -> np.ndarray:
    """Map boxes from the model input back to the original image.

    Args:
        boxes: float [N, 4] xyxy absolute pixels of the model input.
        image_hw: the original image's (height, width).
        input_size: the model input (height, width), or one side.
        mode: the resize mode the input was made with.

    Returns:
        float32 [N, 4] xyxy absolute pixels of the original image (not clipped).
    """
    input_hw = _input_hw(input_size)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if mode == "stretch":
        scale = np.array([image_hw[1] / input_hw[1], image_hw[0] / input_hw[0]] * 2)
        return (boxes * scale).astype(np.float32)
    if mode != "letterbox":
        raise ValueError(f"unknown resize mode {mode!r}: expected one of {', '.join(RESIZE_MODES)}")
    resized_h, resized_w, top, left = letterbox_geometry(image_hw, input_hw)
    scale = np.array([image_hw[1] / resized_w, image_hw[0] / resized_h] * 2)
    return ((boxes - np.array([left, top, left, top])) * scale).astype(np.float32)
