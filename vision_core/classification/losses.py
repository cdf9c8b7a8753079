"""The classifier's training loss: softmax or sigmoid cross-entropy on logits, with the imbalance options.

:class:`ClassificationLoss` takes ``y_true`` as int class indices [B] or float targets [B, K]
(one-hot, multi-hot, or mixed by mixup) and ``y_pred`` logits [B, K]; per sample it is

* ``softmax``: ``-sum_k w_k y_k (1 - p_k)^gamma log p_k`` with ``p = softmax(logits)``;
* ``sigmoid`` (multi-label): ``mean_k a_k (1 - q_k)^gamma BCE_k`` with ``q_k`` the probability
  given to the true side of class k (``p_k`` if ``y_k = 1`` else ``1 - p_k``) and
  ``a_k = w_k y_k + (1 - y_k)`` (the class weight scales its positives);

``gamma = 0`` is plain cross-entropy (Lin et al.'s focal loss otherwise). Label smoothing
``s`` replaces the targets by ``y (1 - s) + s / K`` (softmax) or ``y (1 - s) + s / 2`` (sigmoid).
:func:`balanced_class_weights` gives scikit-learn's "balanced" weights ``N / (K n_k)``;
:func:`sigmoid_cross_entropy_targets` is the QAT fine-tune's loss of a sigmoid head (either Keras flavour).
"""

from __future__ import annotations

import numpy as np

from vision_core.backend import keras

HEADS = ("softmax", "sigmoid")
ops = keras.ops


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> list[float]:
    """``N / (K n_k)`` per class from int labels [N] or multi-hot [N, K] (``n_k``: images showing class k);
    a class without samples gets 1."""
    labels = np.asarray(labels)
    counts = labels.sum(axis=0) if labels.ndim == 2 else np.bincount(labels, minlength=num_classes)
    return [float(len(labels) / (num_classes * c)) if c else 1.0 for c in counts]


@keras.saving.register_keras_serializable("vision_core")
class ClassificationLoss(keras.losses.Loss):
    """Cross-entropy of logits (module docstring); averaged over the batch."""

    def __init__(
        self,
        head: str = "softmax",
        focal_gamma: float = 0.0,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        name: str = "classification_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if head not in HEADS:
            raise ValueError(f"head {head!r}: expected one of {HEADS}")
        self.head, self.focal_gamma, self.label_smoothing = head, float(focal_gamma), float(label_smoothing)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        classes = logits.shape[-1]
        if len(y_true.shape) == 1:
            targets = ops.one_hot(ops.cast(y_true, "int32"), classes)
        else:
            targets = ops.cast(y_true, "float32")
        smoothing = self.label_smoothing
        if smoothing:
            targets = targets * (1 - smoothing) + smoothing / (classes if self.head == "softmax" else 2)
        weights = None if self.class_weights is None else ops.convert_to_tensor(self.class_weights, "float32")
        if self.head == "softmax":
            log_p = ops.log_softmax(logits, axis=-1)
            terms = -targets * log_p
            if self.focal_gamma:
                terms = terms * ops.power(1 - ops.exp(log_p), self.focal_gamma)
            if weights is not None:
                terms = terms * weights
            return ops.sum(terms, axis=-1)
        bce = ops.maximum(logits, 0) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))
        if self.focal_gamma:
            p = ops.sigmoid(logits)
            true_side = targets * p + (1 - targets) * (1 - p)
            bce = bce * ops.power(1 - true_side, self.focal_gamma)
        if weights is not None:
            bce = bce * (weights * targets + (1 - targets))
        return ops.mean(bce, axis=-1)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "head": self.head,
            "focal_gamma": self.focal_gamma,
            "label_smoothing": self.label_smoothing,
            "class_weights": self.class_weights,
        }


def sigmoid_cross_entropy_targets(targets: dict, outputs: dict):
    """Mean binary cross-entropy of the logits output against ``targets["label"]`` (multi-hot [B, K]) or, for
    class indices [B], their one-hot rows: the QAT job's loss (``module:function``) of a sigmoid head."""
    from vision_core.backend import tf

    logits = tf.cast(next(iter(outputs.values())), tf.float32)
    labels = targets["label"]
    if len(labels.shape) == 1:
        labels = tf.one_hot(tf.cast(labels, tf.int32), logits.shape[-1])
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, tf.float32), logits=logits))
