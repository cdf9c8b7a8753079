"""Score a segmenter on a split: one pixel confusion matrix, each image scored at its own size.

:func:`class_maps` runs a runner on image arrays as training feeds them (bilinear stretch to the
input, ``(pixels - mean) / std``) and brings the scores back to each image's size (bilinear) before
the arg-max, so a prediction is compared with the mask as it is on disk. :func:`evaluate_segmenter`
accumulates :func:`~vision_core.segmentation.metrics.confusion_matrix` over a split and returns
:func:`~vision_core.segmentation.metrics.segmentation_metrics` plus ``images`` (scored) and
``skipped`` (pairs that could not be read, logged by name).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from vision_core.data.segmentation.pipeline import load_pair, normalize
from vision_core.data.segmentation.types import SegmentationDataset
from vision_core.logs import get_logger
from vision_core.segmentation.metrics import confusion_matrix, segmentation_metrics

log = get_logger()


def resize_scores(scores: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 ``[h, w, K]`` scores resized bilinearly to ``[height, width, K]`` (OpenCV, half-pixel centres)."""
    if scores.shape[:2] == (height, width):
        return scores
    channels = scores.shape[-1]
    # cv2.resize takes at most 512 channels at once
    parts = [
        cv2.resize(scores[..., i : i + 512], (width, height), interpolation=cv2.INTER_LINEAR)
        for i in range(0, channels, 512)
    ]
    return np.concatenate([p.reshape(height, width, -1) for p in parts], axis=-1)


def class_maps(runner, images: Sequence[np.ndarray], input_size: int, mean, std) -> list[np.ndarray]:
    """The arg-max class map int32 ``[H, W]`` of each uint8 RGB image ``[H, W, 3]``, at the image's size."""
    inputs = np.stack(
        [
            normalize(cv2.resize(image, (input_size, input_size), interpolation=cv2.INTER_LINEAR), mean, std)
            for image in images
        ]
    )
    scores = runner(inputs)
    return [np.argmax(resize_scores(s, *image.shape[:2]), axis=-1).astype(np.int32) for s, image in zip(scores, images)]


def pairs(dataset: SegmentationDataset, skipped: dict[str, str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(image uint8 RGB, mask)`` of each readable pair in order; an unreadable one goes to ``skipped``."""
    for image_path, mask_path in zip(dataset.image_paths, dataset.mask_paths):
        try:
            yield load_pair(str(image_path), str(mask_path), dataset.label_map)
        except (OSError, ValueError) as error:
            skipped[str(image_path)] = str(error)
            log.warning("skipping %s", error)


def evaluate_segmenter(
    runner,
    dataset: SegmentationDataset,
    input_size: int,
    mean: float | Sequence[float] = 127.5,
    std: float | Sequence[float] = 127.5,
    batch_size: int = 8,
    *,
    progress: bool = True,
) -> dict:
    """The metrics of ``runner`` (normalised images -> scores) on every pair of ``dataset`` (module docstring)."""
    matrix = np.zeros((dataset.num_classes, dataset.num_classes), np.int64)
    skipped: dict[str, str] = {}
    images = 0
    batch: list[tuple[np.ndarray, np.ndarray]] = []
    bar = tqdm(total=len(dataset), desc="evaluate", unit="image", disable=not progress, leave=False)

    def score(batch):
        nonlocal matrix
        predictions = class_maps(runner, [image for image, _ in batch], input_size, mean, std)
        for (_, mask), predicted in zip(batch, predictions):
            matrix += confusion_matrix(mask, predicted, dataset.num_classes, dataset.ignore_index)
        bar.update(len(batch))

    for pair in pairs(dataset, skipped):
        batch.append(pair)
        images += 1
        if len(batch) == batch_size:
            score(batch)
            batch = []
    if batch:
        score(batch)
    bar.close()
    if not images:
        raise ValueError(f"{dataset.source}: no readable image/mask pair to score")
    return {**segmentation_metrics(matrix, dataset.class_names), "images": images, "skipped": len(skipped)}
