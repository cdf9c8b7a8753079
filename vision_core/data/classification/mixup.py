"""Mixup of training batches (Zhang et al., 2018): convex combinations of images and of their targets.

:func:`mixup_batches` maps ``(images float32 [B, H, W, C], labels)`` batches (labels int [B] or
multi-hot float [B, K]) to ``(lam * images + (1 - lam) * images[::-1], lam * y + (1 - lam) * y[::-1])``
with ``y`` the float32 [B, K] one-hot (or multi-hot) targets and one ``lam ~ Beta(alpha, alpha)`` per
batch, drawn from TensorFlow's global generator (seeded by the trainer). Pairing a batch with its
reverse mixes distinct images without a second shuffle.
"""

from __future__ import annotations

from vision_core.backend import tf


def sample_beta(alpha: float) -> tf.Tensor:
    """One draw of Beta(alpha, alpha), as ``g1 / (g1 + g2)`` of two Gamma(alpha) draws."""
    first = tf.random.gamma((), alpha)
    return first / (first + tf.random.gamma((), alpha))


def mixup_batches(dataset: tf.data.Dataset, alpha: float, num_classes: int) -> tf.data.Dataset:
    """``dataset`` with every batch mixed with its own reverse (module docstring); targets float32 [B, K]."""

    def mix(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        targets = tf.one_hot(tf.cast(labels, tf.int32), num_classes) if labels.shape.rank == 1 else labels
        targets = tf.cast(targets, tf.float32)
        weight = sample_beta(alpha)
        images = weight * images + (1 - weight) * tf.reverse(images, [0])
        return images, weight * targets + (1 - weight) * tf.reverse(targets, [0])

    return dataset.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
