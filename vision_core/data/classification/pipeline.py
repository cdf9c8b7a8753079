"""The classification input pipeline: image files -> normalised float32 batches, in TensorFlow ops.

Each element is read with ``tf.io.read_file``, decoded with ``tf.io.decode_image`` (PNG, JPEG,
BMP, WebP, GIF's first frame; ``channels`` forced) or, for a DICOM file (``.dcm``, ``.dicom``), read
with pydicom by :func:`~vision_core.data.classification.dicom.read_dicom` (its ``window`` or the
file's VOI, MONOCHROME1 inverted) inside ``tf.numpy_function``, a grey image repeated to three
channels when ``channels`` is 3 and a colour one converted to grey when it is 1; then resized
with bilinear interpolation when its size is not the input size, and normalised to
``(pixels - mean) / std``, computed as ``pixels / std - mean / std`` so that ``mean = std = 127.5`` is exactly
:func:`vision_core.data.synthetic.normalize` (``x / 127.5 - 1``). A batch is
``(images float32 [B, H, W, C], labels int32 [B])``, or for a multi-label dataset
``(images, labels float32 [B, K] multi-hot)``.

Bad data met mid-epoch never stops a run: an image that is missing or fails to decode is
skipped by ``Dataset.ignore_errors`` (a warning is logged; batches of that epoch hold one image
fewer). ``check_classification_dataset`` names such files up front.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from vision_core.backend import tf
from vision_core.data.classification.types import DICOM_SUFFIXES, ClassificationDataset


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from one side or a pair."""
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    height, width = image_size
    return int(height), int(width)


def dicom_pixels(path: str | bytes, channels: int, window: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 [H, W, channels] of a DICOM file: :func:`read_dicom`, grey repeated to 3 or colour made grey."""
    from vision_core.data.classification.dicom import read_dicom

    image = read_dicom(path.decode() if isinstance(path, bytes) else path, window)
    if channels == 3 and image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    if channels == 1 and image.shape[-1] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
    return image


def _decode(path: tf.Tensor, channels: int, window: tuple[float, float] | None) -> tf.Tensor:
    """uint8 [H, W, channels] of an image or DICOM file (a string tensor), chosen by the file's suffix."""

    def read_dicom_file() -> tf.Tensor:
        image = tf.numpy_function(lambda p: dicom_pixels(p, channels, window), [path], tf.uint8, stateful=False)
        image.set_shape((None, None, channels))
        return image

    def decode_image() -> tf.Tensor:
        return tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False, dtype=tf.uint8)

    pattern = "|".join(suffix.lstrip(".") for suffix in DICOM_SUFFIXES)
    return tf.cond(
        tf.strings.regex_full_match(tf.strings.lower(path), rf".*\.({pattern})"), read_dicom_file, decode_image
    )


def preprocess_image_file(
    path: tf.Tensor,
    image_size: int | Sequence[int],
    channels: int = 3,
    mean: float | Sequence[float] = 127.5,
    std: float | Sequence[float] = 127.5,
    window: tuple[float, float] | None = None,
) -> tf.Tensor:
    """Read, decode, resize and normalise one image or DICOM file (a string tensor) -> float32 [H, W, channels].

    ``mean`` / ``std``: one value or one per channel, in pixel units (0..255); ``window``: DICOM
    ``(centre, width)`` instead of each file's own. Raises a TensorFlow error (``NotFoundError``,
    ``InvalidArgumentError``, ``UnknownError`` from the DICOM reader) for a missing or undecodable file.
    """
    height, width = _size(image_size)
    image = _decode(path, channels, window)
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
    window: tuple[float, float] | None = None,
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
        window: DICOM ``(centre, width)`` for every DICOM file (None: each file's VOI, see ``read_dicom``).

    An image that is missing or fails to decode is skipped (``ignore_errors``, logged), so an
    epoch can hold fewer images than ``dataset``. Returns the batched, prefetched dataset.
    """
    paths = tf.constant([str(p) for p in dataset.paths], tf.string)
    labels = dataset.labels.astype(np.float32 if dataset.multi_label else np.int32)
    data = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels)))
    if shuffle:
        data = data.shuffle(max(len(dataset), 1), seed=seed, reshuffle_each_iteration=True)
    data = data.map(
        lambda path, label: (preprocess_image_file(path, image_size, channels, mean, std, window), label),
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
    window: tuple[float, float] | None = None,
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
        dataset, image_size, batch_size, channels=channels, mean=mean, std=std, window=window
    ):
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(images), np.concatenate(labels)
