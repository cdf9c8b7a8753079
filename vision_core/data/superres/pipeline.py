"""tf.data pipelines of super-resolution pairs: random training patches, whole validation images.

Model inputs and targets are ``pixels / 255`` float32 of one of two colour modes:

* ``"y"``: the BT.601 Y channel (``[..., 1]``, values in [16/255, 235/255]) rounded to 8-bit levels,
  the paper's setting (MATLAB's ``rgb2ycbcr`` of uint8 images) and what a uint8 int8 model is fed;
* ``"rgb"``: the three RGB channels.

Training (:func:`make_patch_dataset`): each image gives ``patches_per_image`` random input patches of
``patch_size`` and their ``patch_size * scale`` targets per epoch, each flipped left-right, up-down and
rotated by a multiple of 90 degrees at random (the 8 symmetries of the square), shuffled with
``reshuffle_each_iteration`` (the trainer seeds the global generator). The decoded pairs are cached
in memory after the first epoch.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from vision_core.backend import tf
from vision_core.data.superres.colour import RGB_TO_YCBCR, YCBCR_OFFSET
from vision_core.data.superres.folders import SRDataset
from vision_core.logs import get_logger

log = get_logger()

ColourMode = Literal["y", "rgb"]
COLOUR_MODES = ("y", "rgb")


def channels_of(colour: ColourMode) -> int:
    """Model channels of a colour mode: 1 for ``y``, 3 for ``rgb``."""
    if colour not in COLOUR_MODES:
        raise ValueError(f"unknown colour mode {colour!r}: expected one of {', '.join(COLOUR_MODES)}")
    return 1 if colour == "y" else 3


def to_model_pixels(rgb: np.ndarray, colour: ColourMode) -> np.ndarray:
    """uint8 (or float 0..255) RGB ``[..., 3]`` -> the model's float32 ``[..., C]`` in ``pixels / 255`` (numpy;
    Y rounded to 8-bit levels)."""
    rgb = np.asarray(rgb, np.float32)
    if channels_of(colour) == 3:
        return rgb / 255.0
    y = rgb @ (RGB_TO_YCBCR[:, 0] / 255.0).astype(np.float32) + np.float32(YCBCR_OFFSET[0])
    return (np.round(y) / np.float32(255.0))[..., None]


def tf_model_pixels(rgb: tf.Tensor, colour: ColourMode) -> tf.Tensor:
    """:func:`to_model_pixels` in TensorFlow ops."""
    rgb = tf.cast(rgb, tf.float32)
    if channels_of(colour) == 3:
        return rgb / 255.0
    weights = tf.constant((RGB_TO_YCBCR[:, 0] / 255.0)[:, None], tf.float32)
    return tf.round(tf.tensordot(rgb, weights, 1) + float(YCBCR_OFFSET[0])) / 255.0


def _pairs_dataset(data: SRDataset, skip_bad: bool = False, min_size: int = 0) -> tf.data.Dataset:
    """The pairs of ``data``; ``skip_bad``: a pair that cannot be read, or whose input is smaller than
    ``min_size`` on a side, is logged, counted in ``data.skipped`` and left out instead of stopping the run."""

    def pairs():
        kept = 0
        for index in range(len(data)):
            try:
                lr, hr = data.pair(index)
                if min(lr.shape[:2]) < min_size:
                    raise ValueError(
                        f"{data.hr_paths[index]}: its {lr.shape[1]}x{lr.shape[0]} input is smaller than the "
                        f"{min_size} px training patch"
                    )
            except (OSError, ValueError) as error:
                if not skip_bad:
                    raise
                data.skipped[str(data.hr_paths[index])] = str(error)
                log.warning("skipping a training image: %s", error)
                continue
            kept += 1
            yield lr, hr
        if not kept:
            raise ValueError(f"{data.source}: no usable training image (see the warnings; data check lists them)")

    spec = tf.TensorSpec((None, None, 3), tf.uint8)
    return tf.data.Dataset.from_generator(pairs, output_signature=(spec, spec))


def random_symmetry(lr: tf.Tensor, hr: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The same random flip (left-right, up-down) and 90-degree rotation of both images."""
    if tf.random.uniform(()) < 0.5:
        lr, hr = tf.reverse(lr, [1]), tf.reverse(hr, [1])
    if tf.random.uniform(()) < 0.5:
        lr, hr = tf.reverse(lr, [0]), tf.reverse(hr, [0])
    turns = tf.random.uniform((), 0, 4, tf.int32)
    return tf.image.rot90(lr, turns), tf.image.rot90(hr, turns)


def busiest_patch(
    lr: tf.Tensor, hr: tf.Tensor, patch_size: int, scale: int, candidates: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Of ``candidates`` random aligned patches, the one whose high-resolution patch varies most: flat
    patches, which bicubic already gets right, teach the model little."""
    best_lr, best_hr = random_patch(lr, hr, patch_size, scale)
    best = tf.math.reduce_variance(tf.cast(best_hr, tf.float32))
    for _ in range(candidates - 1):
        lr_patch, hr_patch = random_patch(lr, hr, patch_size, scale)
        variance = tf.math.reduce_variance(tf.cast(hr_patch, tf.float32))
        better = variance > best
        best_lr = tf.where(better, lr_patch, best_lr)
        best_hr = tf.where(better, hr_patch, best_hr)
        best = tf.maximum(best, variance)
    return best_lr, best_hr


def random_patch(lr: tf.Tensor, hr: tf.Tensor, patch_size: int, scale: int) -> tuple[tf.Tensor, tf.Tensor]:
    """An aligned random crop: ``patch_size`` square of ``lr`` and the ``patch_size * scale`` square of ``hr``."""
    shape = tf.shape(lr)
    top = tf.random.uniform((), 0, shape[0] - patch_size + 1, tf.int32)
    left = tf.random.uniform((), 0, shape[1] - patch_size + 1, tf.int32)
    lr_patch = lr[top : top + patch_size, left : left + patch_size]
    hr_size = patch_size * scale
    hr_patch = hr[top * scale : top * scale + hr_size, left * scale : left * scale + hr_size]
    return tf.ensure_shape(lr_patch, (patch_size, patch_size, 3)), tf.ensure_shape(hr_patch, (hr_size, hr_size, 3))


def make_patch_dataset(
    data: SRDataset,
    patch_size: int,
    batch_size: int,
    colour: ColourMode = "y",
    patches_per_image: int = 16,
    augment: bool = True,
    patch_candidates: int = 1,
) -> tf.data.Dataset:
    """One epoch of shuffled training batches ``(inputs [B, p, p, C], targets [B, p*s, p*s, C])`` float32.

    An image whose input is smaller than ``patch_size``, or that cannot be read, is skipped with a warning
    (:func:`_pairs_dataset`; ``data check`` lists them). ``patch_candidates`` > 1: each patch is the
    busiest of that many (:func:`busiest_patch`). The epoch has
    ``len(data) * patches_per_image // batch_size`` batches.
    """
    scale = data.scale
    images = _pairs_dataset(data, skip_bad=True, min_size=patch_size).cache()
    dataset = images.repeat(patches_per_image).shuffle(len(data) * patches_per_image, reshuffle_each_iteration=True)

    def sample(lr, hr):
        lr, hr = busiest_patch(lr, hr, patch_size, scale, patch_candidates)
        if augment:
            lr, hr = random_symmetry(lr, hr)
        return tf_model_pixels(lr, colour), tf_model_pixels(hr, colour)

    batches = len(data) * patches_per_image // batch_size
    if batches < 1:
        raise ValueError(
            f"{data.source}: {len(data)} images x {patches_per_image} patches make no batch of {batch_size}"
        )
    dataset = dataset.map(sample, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size, drop_remainder=True)
    # repeated then cut: an epoch keeps its number of batches when unreadable images were skipped
    return dataset.repeat().take(batches).prefetch(tf.data.AUTOTUNE)


def make_image_dataset(data: SRDataset, colour: ColourMode = "y") -> tf.data.Dataset:
    """Whole images in order, batch 1: ``(inputs [1, h, w, C], targets [1, h*s, w*s, C])`` float32."""
    dataset = _pairs_dataset(data).cache()
    dataset = dataset.map(lambda lr, hr: (tf_model_pixels(lr, colour), tf_model_pixels(hr, colour)))
    return dataset.batch(1).apply(tf.data.experimental.assert_cardinality(len(data)))
