"""The detection input pipeline: records → decoded, augmented, encoded tf.data batches.

Each element is read with OpenCV and augmented with albumentations inside
``tf.numpy_function`` (parallel ``map``), then batched and prefetched. Boxes are
**xyxy absolute pixels, float32 = (x_min, y_min, x_max, y_max)** of the model input at
every step. A batch is ``(images, targets)``:

* images: float32 [B, h, w, 3] after ``normalize`` (default ``x / 127.5 - 1``, the range the
  suite's models take), or uint8 with ``normalize=None``;
* targets without an encoder: ``{"boxes": float32 [B, max_boxes, 4], "classes": int32
  [B, max_boxes]}``, padded with -1 (a class of -1 marks padding);
* targets with ``encoder(image uint8 [h, w, 3], boxes float32 [M, 4], classes int32 [M])``:
  whatever (nested) fixed-shape arrays it returns, batched.

Bad data met mid-epoch never stops a run: an image that is missing, unreadable or outside
the dataset root is skipped, boxes that cannot be used (outside the image, no area,
unknown class) are clipped or dropped, and all of it is counted in :class:`PipelineStats`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vision_core.backend import tf
from vision_core.data.detection.augment import apply_transform
from vision_core.data.detection.images import read_image
from vision_core.data.detection.types import DetectionDataset, inside_root
from vision_core.logs import get_logger

log = get_logger()

PAD = -1


@dataclass
class PipelineStats:
    """Counters of what the pipeline skipped or changed; safe to read while it runs.

    Attributes:
        skipped_images: images skipped, counted each time one is met (once per epoch).
        skipped: path -> reason of every skipped image.
        dropped_boxes: boxes dropped before augmentation (no area inside the image, or unknown class).
        truncated_boxes: boxes beyond ``max_boxes`` left out of the padded targets.
    """

    skipped_images: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    dropped_boxes: int = 0
    truncated_boxes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def skip(self, path: str, reason: str) -> None:
        with self._lock:
            self.skipped_images += 1
            first = path not in self.skipped
            self.skipped[path] = reason
        if first:
            log.warning("skipping %s: %s", path, reason)

    def add(self, dropped: int = 0, truncated: int = 0) -> None:
        with self._lock:
            self.dropped_boxes += dropped
            self.truncated_boxes += truncated

    def as_dict(self) -> dict:
        with self._lock:
            return {
                "skipped_images": self.skipped_images,
                "skipped": dict(self.skipped),
                "dropped_boxes": self.dropped_boxes,
                "truncated_boxes": self.truncated_boxes,
            }


def to_minus_one_one(images: tf.Tensor) -> tf.Tensor:
    """uint8 images -> float32 in [-1, 1] (``x / 127.5 - 1``), the input range of the suite's models."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def sanitize_boxes(
    boxes: np.ndarray, classes: np.ndarray, width: int, height: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Clip boxes (xyxy absolute pixels, float32 [N, 4]) to the image; drop those left without area.

    Boxes with a non-finite coordinate or a class outside 0..num_classes-1 are dropped too.
    Returns ``(boxes float32 [M, 4], classes int32 [M], number dropped)``.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes, np.int32).reshape(-1)
    finite = np.isfinite(boxes).all(axis=1)
    clipped = np.clip(np.where(finite[:, None], boxes, 0), 0, [width, height, width, height]).astype(np.float32)
    keep = (
        finite
        & (clipped[:, 2] > clipped[:, 0])
        & (clipped[:, 3] > clipped[:, 1])
        & (classes >= 0)
        & (classes < num_classes)
    )
    return clipped[keep], classes[keep], int((~keep).sum())


def pad_targets(boxes: np.ndarray, classes: np.ndarray, max_boxes: int) -> tuple[dict[str, np.ndarray], int]:
    """``({"boxes": float32 [max_boxes, 4], "classes": int32 [max_boxes]}, boxes left out)``, padded with -1."""
    count = min(len(boxes), max_boxes)
    padded_boxes = np.full((max_boxes, 4), PAD, np.float32)
    padded_classes = np.full((max_boxes,), PAD, np.int32)
    padded_boxes[:count] = boxes[:count]
    padded_classes[:count] = classes[:count]
    return {"boxes": padded_boxes, "classes": padded_classes}, len(boxes) - count


def _probe(transform, encoder, max_boxes: int):
    """The transform's output (h, w) and a zero-filled targets template (fixes dtypes and shapes)."""
    shapes = set()
    for size in ((37, 53), (64, 48)):
        # a non-empty int32 label field first: albumentations then keeps labels numeric (no shared label encoder)
        image, _, _ = apply_transform(
            transform, np.zeros((*size, 3), np.uint8), np.array([[0, 0, 37, 37]], np.float32), np.zeros((1,), np.int32)
        )
        shapes.add(image.shape)
    if len(shapes) != 1:
        raise ValueError(
            f"the transform returns images of varying shapes {sorted(shapes)}: it must end with a "
            "resize to the model input (see augment.resize_to_input)"
        )
    (input_shape,) = shapes
    if encoder is None:
        template = pad_targets(np.zeros((0, 4), np.float32), np.zeros((0,), np.int32), max_boxes)[0]
    else:
        targets = encoder(np.zeros(input_shape, np.uint8), np.zeros((0, 4), np.float32), np.zeros((0,), np.int32))
        template = tf.nest.map_structure(np.asarray, targets)
    return input_shape, tf.nest.map_structure(np.zeros_like, template)


def make_dataset(
    dataset: DetectionDataset,
    transform,
    batch_size: int,
    shuffle: bool = False,
    encoder: Callable | None = None,
    max_boxes: int = 100,
    normalize: Callable[[tf.Tensor], tf.Tensor] | None = to_minus_one_one,
    seed: int = 0,
    num_parallel_calls: int = 2,
    drop_remainder: bool = False,
    stats: PipelineStats | None = None,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(images, targets)`` batches (see the module docstring for both).

    Args:
        dataset: records with boxes xyxy absolute pixels float32 [N, 4], class ids int32 [N].
        transform: an albumentations pipeline ending at the model input size
            (``augment.train_transform`` / ``augment.val_transform``).
        batch_size: images per batch.
        shuffle: reshuffle the records every epoch (seeded by ``seed``).
        encoder: ``encoder(image, boxes, classes) -> targets`` on the augmented sample (boxes
            xyxy pixels of the model input); default: pad to ``max_boxes``.
        max_boxes: the padded box count per image when there is no encoder.
        normalize: applied to the uint8 image batch in TensorFlow; None keeps uint8.
        seed: the shuffle seed.
        num_parallel_calls: images decoded and augmented at once.
        drop_remainder: drop a last, smaller batch.
        stats: counters of skipped images and dropped boxes; pass one to read them.

    The record order is reproducible (``seed``); augmentation draws are not when several
    calls run in parallel, since they share the transform's random generator.

    Returns:
        The batched, prefetched dataset (one pass over the records per iteration).
    """
    stats = stats if stats is not None else PipelineStats()
    input_shape, template = _probe(transform, encoder, max_boxes)
    flat_template = tf.nest.flatten(template)
    blank = np.zeros(input_shape, np.uint8)

    def load(index):
        record = dataset.records[int(index)]
        if not inside_root(record.path, dataset.root):
            stats.skip(str(record.path), f"outside the dataset root {dataset.root}")
            return [blank, False, *flat_template]
        try:
            image = read_image(record.path)
        except OSError as error:  # missing, corrupt or truncated file
            stats.skip(str(record.path), str(error))
            return [blank, False, *flat_template]
        boxes, classes, dropped = sanitize_boxes(
            record.boxes, record.classes, image.shape[1], image.shape[0], dataset.num_classes
        )
        image, boxes, classes = apply_transform(transform, image, boxes, classes)
        if encoder is None:
            targets, truncated = pad_targets(boxes, classes, max_boxes)
        else:
            targets, truncated = encoder(image, boxes, classes), 0
        stats.add(dropped=dropped, truncated=truncated)
        flat = [np.asarray(value, like.dtype) for value, like in zip(tf.nest.flatten(targets), flat_template)]
        return [image, True, *flat]

    def tf_load(index):
        dtypes = [tf.uint8, tf.bool, *[tf.as_dtype(a.dtype) for a in flat_template]]
        image, ok, *flat = tf.numpy_function(load, [index], dtypes, stateful=True)
        image.set_shape(input_shape)
        ok.set_shape(())
        for tensor, like in zip(flat, flat_template):
            tensor.set_shape(like.shape)
        return image, ok, tuple(flat)

    def finish(image, ok, flat):
        return (normalize(image) if normalize is not None else image), tf.nest.pack_sequence_as(template, list(flat))

    data = tf.data.Dataset.range(len(dataset))
    if shuffle:
        data = data.shuffle(max(len(dataset), 1), seed=seed, reshuffle_each_iteration=True)
    data = data.map(tf_load, num_parallel_calls=num_parallel_calls, deterministic=True)
    data = data.filter(lambda image, ok, flat: ok).map(finish, num_parallel_calls=num_parallel_calls)
    return data.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
