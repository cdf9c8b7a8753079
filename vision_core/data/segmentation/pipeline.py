"""The segmentation input pipeline: image/mask pairs -> normalised image batches and label maps.

Each pair is read in NumPy (:func:`load_pair`: OpenCV for the image, Pillow for the mask as
indices) inside ``tf.numpy_function`` and transformed jointly with albumentations 2.0.8
(:func:`segmentation_transform`): stretched to the input size (bilinear for the image, nearest
for the mask), then for training a random scale/shift (:class:`albumentations.Affine`; the area
it uncovers is filled with grey in the image and with the ignore index in the mask), a left-right
flip and colour jitter. A batch is ``(images float32 [B, S, S, 3] = (pixels - mean) / std,
masks int32 [B, S, S])``; mask values are class indices or the ignore index.

A pair that is missing or fails to decode mid-epoch is skipped (``Dataset.ignore_errors``, logged),
never fatal; ``data check`` names such files up front.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np

from vision_core.backend import tf
from vision_core.data.detection.images import read_image
from vision_core.data.segmentation.masks import map_labels, read_mask
from vision_core.data.segmentation.types import IGNORE_INDEX, SegmentationDataset

PAD_COLOUR = (127, 127, 127)  # mid-grey: about 0 after (x - 127.5) / 127.5


def load_pair(image_path: str, mask_path: str, label_map: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8 RGB [H, W, 3], mask uint8 [H, W])``, the mask's values through ``label_map``
    (:func:`~vision_core.data.segmentation.masks.map_labels`); a size mismatch or a label above 255 raises
    ValueError."""
    image, mask = read_image(image_path), map_labels(read_mask(mask_path), label_map)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"{mask_path}: mask is {mask.shape[::-1]}, its image {image.shape[1::-1]} (width, height)")
    if mask.max(initial=0) > 255:
        raise ValueError(f"{mask_path}: label values above 255")
    return image, mask.astype(np.uint8)


def segmentation_transform(
    input_size: int, augment: bool = False, ignore_index: int = IGNORE_INDEX, seed: int | None = None
) -> A.Compose:
    """The albumentations steps of one pair (see the module docstring); masks always resize nearest."""
    steps: list = [
        A.Resize(input_size, input_size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST)
    ]
    if augment:
        steps += [
            A.Affine(
                scale=(0.75, 1.25),
                translate_percent=(-0.1, 0.1),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=PAD_COLOUR,
                fill_mask=ignore_index,
                p=0.7,
            ),
            A.HorizontalFlip(p=0.5),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03, p=0.5),
        ]
    return A.Compose(steps, seed=seed)


def normalize(image: np.ndarray, mean: float | Sequence[float], std: float | Sequence[float]) -> np.ndarray:
    """uint8 RGB [..., 3] -> float32 ``(pixels - mean) / std``, computed as ``pixels / std - mean / std``."""
    std = np.asarray(std, np.float64)
    return (image.astype(np.float32) / std.astype(np.float32) - (np.asarray(mean, np.float64) / std)).astype(np.float32)


def make_segmentation_dataset(
    dataset: SegmentationDataset,
    input_size: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    augment: bool = False,
    seed: int | None = None,
    mean: float | Sequence[float] = 127.5,
    std: float | Sequence[float] = 127.5,
    workers: int = 2,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(images float32 [B, S, S, 3], masks int32 [B, S, S])`` batches.

    Unshuffled batches keep ``dataset`` order; ``shuffle`` reshuffles every epoch (seeded by ``seed``);
    ``augment`` applies the training transform; ``workers`` pairs are read in parallel.
    """
    transform = segmentation_transform(input_size, augment, dataset.ignore_index, seed)

    def load(image_path: bytes, mask_path: bytes) -> tuple[np.ndarray, np.ndarray]:
        image, mask = load_pair(image_path.decode(), mask_path.decode(), dataset.label_map)
        out = transform(image=image, mask=mask)
        return normalize(out["image"], mean, std), out["mask"].astype(np.int32)

    def load_tf(image_path, mask_path):
        image, mask = tf.numpy_function(load, [image_path, mask_path], [tf.float32, tf.int32], stateful=augment)
        image.set_shape((input_size, input_size, 3))
        mask.set_shape((input_size, input_size))
        return image, mask

    paths = (
        tf.constant([str(p) for p in dataset.image_paths], tf.string),
        tf.constant([str(p) for p in dataset.mask_paths], tf.string),
    )
    data = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
        data = data.shuffle(max(len(dataset), 1), seed=seed, reshuffle_each_iteration=True)
    data = data.map(load_tf, num_parallel_calls=max(1, workers), deterministic=True)
    data = data.ignore_errors(log_warning=True)
    return data.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
