"""The volume input pipeline: NIfTI files -> normalised float32 batches ``[B, H, W, D]``.

Each file is read by :func:`~vision_core.data.classification.nifti.read_nifti` (reoriented to RAS+,
percentile-clipped to 0..255, resampled to ``volume_shape`` ``(D, H, W)``, uint8 ``[H, W, D]``) inside
``tf.numpy_function``, then normalised as the app's images are, ``v / std - mean / std``. Batches are
``(volumes float32 [B, H, W, D], labels int32 [B])`` (multi-label: float32 ``[B, K]``). As for images, a file
that fails to read mid-epoch is skipped (``ignore_errors``, logged); ``data check`` names it up front.
Augmentation mirrors a volume left-right (its x axis, ``H``) with probability 1/2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vision_core.backend import tf
from vision_core.data.classification.nifti import read_nifti
from vision_core.data.classification.types import ClassificationDataset


def preprocess_volume_file(
    path: tf.Tensor, volume_shape: Sequence[int], mean: float = 127.5, std: float = 127.5
) -> tf.Tensor:
    """Read and normalise one NIfTI file (a string tensor) -> float32 ``[H, W, D]``."""
    depth, height, width = (int(n) for n in volume_shape)
    volume = tf.numpy_function(
        lambda p: read_nifti(p.decode(), (depth, height, width)), [path], tf.uint8, stateful=False
    )
    volume.set_shape((height, width, depth))
    return tf.cast(volume, tf.float32) / np.float32(std) - np.float32(mean / std)


def make_volume_dataset(
    dataset: ClassificationDataset,
    volume_shape: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool = False,
    augment: bool = False,
    seed: int | None = None,
    mean: float = 127.5,
    std: float = 127.5,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(volumes float32 [B, H, W, D], labels)`` batches of ``dataset``'s NIfTI files;
    ``shuffle`` reshuffles every epoch (seeded by ``seed``), ``augment`` mirrors left-right."""
    paths = tf.constant([str(p) for p in dataset.paths], tf.string)
    labels = dataset.labels.astype(np.float32 if dataset.multi_label else np.int32)
    data = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels)))
    if shuffle:
        data = data.shuffle(max(len(dataset), 1), seed=seed, reshuffle_each_iteration=True)
    data = data.map(
        lambda path, label: (preprocess_volume_file(path, volume_shape, mean, std), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    data = data.ignore_errors(log_warning=True)
    if augment:
        data = data.map(
            lambda volume, label: (tf.image.random_flip_up_down(volume, seed=seed), label),  # axis 0: x
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_volumes(
    dataset: ClassificationDataset,
    volume_shape: Sequence[int],
    mean: float = 127.5,
    std: float = 127.5,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Every readable volume of ``dataset`` in memory, in ``dataset.paths`` order: ``(volumes float32 [N, H, W, D],
    labels)``; unreadable files are skipped, so N may be less than ``len(dataset)``."""
    depth, height, width = (int(n) for n in volume_shape)
    volumes = [np.zeros((0, height, width, depth), np.float32)]
    labels = [np.zeros((0, *dataset.labels.shape[1:]), np.float32 if dataset.multi_label else np.int32)]
    for batch_volumes, batch_labels in make_volume_dataset(dataset, volume_shape, batch_size, mean=mean, std=std):
        volumes.append(batch_volumes.numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(volumes), np.concatenate(labels)
