"""The segmenter's loss: per-pixel softmax cross-entropy, ignore-index pixels left out.

One function serves Keras training (:func:`segmentation_loss` returns the ``(y_true, y_pred)``
loss) and the QAT fine-tune (:func:`qat_cross_entropy`, a ``module:function`` loss of
:mod:`vision_core.quant.qat_job`), in either Keras flavour.
"""

from __future__ import annotations

from vision_core.backend import tf


def masked_cross_entropy(labels, logits, ignore_index: int = 255):
    """Mean cross-entropy of ``logits`` float ``[B, H, W, K]`` against ``labels`` int ``[B, H, W]`` over the pixels
    whose label is not ``ignore_index`` (0 when there are none)."""
    labels = tf.cast(tf.reshape(labels, tf.shape(logits)[:-1]), tf.int32)
    valid = tf.not_equal(labels, ignore_index)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=tf.cast(logits, tf.float32))
    weights = tf.cast(valid, tf.float32)
    return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def segmentation_loss(ignore_index: int = 255):
    """The Keras ``loss(y_true, y_pred)`` of :func:`masked_cross_entropy`."""

    def loss(y_true, y_pred):
        return masked_cross_entropy(y_true, y_pred, ignore_index)

    return loss


def qat_cross_entropy(targets: dict, outputs: dict, ignore_index: int = 255):
    """The QAT fine-tune's loss: ``targets["label"]`` masks against the model's only output (logits)."""
    return masked_cross_entropy(targets["label"], next(iter(outputs.values())), ignore_index)
