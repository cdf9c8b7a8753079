"""The classification input pipeline: image files -> normalised float32 batches, in TensorFlow ops.

Each element is read with ``tf.io.read_file``, decoded with ``tf.io.decode_image`` (PNG, JPEG,
BMP, WebP, GIF's first frame; ``channels`` forced), resized with bilinear interpolation when its
size is not the input size, and normalised to ``(pixels - mean) / std``, computed as
``pixels / std - mean / std`` so that ``mean = std = 127.5`` is exactly
:func:`vision_core.data.synthetic.normalize` (``x / 127.5 - 1``). A batch is
``(images float32 [B, H, W, C], labels int32 [B])``, or for a multi-label dataset
``(images, labels float32 [B, K] multi-hot)``.

Bad data met mid-epoch never stops a run: an image that is missing or fails to decode is
skipped by ``Dataset.ignore_errors`` (a warning is logged; batches of that epoch hold one image
fewer). ``check_classification_dataset`` names such files up front.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vision_core.backend import tf
from vision_core.data.classification.types import ClassificationDataset


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from one side or a pair."""
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    height, width = image_size
    return int(height), int(width)


def preprocess_image_file(
    path: tf.Tensor,
    image_size: int | Sequence[int],
    channels: int = 3,
    mean: float | Sequence[float] = 127.5,
    std: float | Sequence[float] = 127.5,
) -> tf.Tensor:
    """Read, decode, resize and normalise one image file (a string tensor) -> float32 [H, W, channels].

    ``mean`` / ``std``: one value or one per channel, in pixel units (0..255). Raises a TensorFlow
    error (``NotFoundError``, ``InvalidArgumentError``) for a missing or undecodable file.
    """
    height, width = _size(image_size)
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False, dtype=tf.uint8)
    pixels = tf.cast(image, tf.float32)
    same_size = tf.reduce_all(tf.shape(image)[:2] == [height, width])
    pixels = tf.cond(same_size, lambda: pixels, lambda: tf.image.resize(pixels, (height, width), method="bilinear"))
    pixels.set_shape((height, width, channels))
    std = np.asarray(std, np.float64)
    return pixels / tf.constant(std, tf.float32) - tf.constant(np.asarray(mean, np.float64) / std, tf.float32)


def make_classification_dataset(
    dataset: ClassificationDataset,
    image_size: int | Sequence[int],
    batch_size: int,
    *,
    shuffle: bool = False,
    augment: bool = False,
    seed: int | None = None,
    channels: int = 3,
    mean: float | Sequence[float] = 127.5,
    std: float | Sequence[float] = 127.5,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(images float32 [B, H, W, C], labels int32 [B])`` batches (multi-label:
    labels float32 [B, K]).

    Args:
        dataset: paths and labels; unshuffled batches keep ``dataset.paths`` order.
        image_size: the model input side, or ``(height, width)``.
        batch_size: images per batch.
        shuffle: reshuffle the paths every epoch (``reshuffle_each_iteration=True``), seeded by ``seed``.
        augment: flip each image left-right with probability 1/2 (seeded by ``seed``).
        seed: the shuffle and flip seed; None draws a fresh one.
        channels: 3 (RGB) or 1 (grey); every image is decoded to it.
        mean, std: normalisation in pixel units, one value or one per channel.
        drop_remainder: drop a last, smaller batch.

    An image that is missing or fails to decode is skipped (``ignore_errors``, logged), so an
    epoch can hold fewer images than ``dataset``. Returns the batched, prefetched dataset.
    """
    paths = tf.constant([str(p) for p in dataset.paths], tf.string)
    labels = dataset.labels.astype(np.float32 if dataset.multi_label else np.int32)
    data = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels)))
    if shuffle:
        data = data.shuffle(max(len(dataset), 1), seed=seed, reshuffle_each_iteration=True)
    data = data.map(
        lambda path, label: (preprocess_image_file(path, image_size, channels, mean, std), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    data = data.ignore_errors(log_warning=True)
    if augment:
        data = data.map(
            lambda image, label: (tf.image.random_flip_left_right(image, seed=seed), label),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return data.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def load_images(
    dataset: ClassificationDataset,
    image_size: int | Sequence[int],
    channels: int = 3,
    mean: float | Sequence[float] = 127.5,
    std: float | Sequence[float] = 127.5,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Every readable image of a small ``dataset`` in memory, in ``dataset.paths`` order.

    Returns ``(images float32 [N, H, W, C], labels int32 [N] or float32 [N, K])`` as :func:`make_classification_dataset`
    makes them (unshuffled, no augmentation); unreadable images are skipped, so N may be less
    than ``len(dataset)``.
    """
    height, width = _size(image_size)
    images = [np.zeros((0, height, width, channels), np.float32)]
    labels = [np.zeros((0, *dataset.labels.shape[1:]), np.float32 if dataset.multi_label else np.int32)]
    for batch_images, batch_labels in make_classification_dataset(
        dataset, image_size, batch_size, channels=channels, mean=mean, std=std
    ):
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(images), np.concatenate(labels)
