"""Detection losses over the targets of :class:`vision_core.detection.boxes.AnchorEncoder`.

Targets, per anchor (``[B, A]`` batches of the encoder's output): ``class_targets`` int —
``0..K-1`` positive, ``K`` (= ``num_classes``) background, ``-1`` ignored;
``box_targets`` float32 ``[B, A, 4]`` — encoded ``(ty, tx, th, tw)`` (see
:func:`vision_core.detection.boxes.encode_boxes`), meaningful on positives only.
Predictions are raw: logits and box encodings in the same ``(ty, tx, th, tw)`` form.

Every loss is a float32 scalar summed over the batch and divided by the number of
positive anchors in the batch (at least 1), as RetinaNet and SSD normalise.
"""

from __future__ import annotations

from vision_core.backend import tf
from vision_core.detection.boxes import IGNORE


def _targets(class_targets) -> tf.Tensor:
    # Keras hands y_true over as floats; the values are small exact integers.
    return tf.cast(tf.convert_to_tensor(class_targets), tf.int32)


def positive_mask(class_targets, num_classes: int) -> tf.Tensor:
    """bool ``[B, A]``: anchors matched to an object (class in ``0..num_classes-1``)."""
    class_targets = _targets(class_targets)
    return (class_targets >= 0) & (class_targets < num_classes)


def _num_positives(positive) -> tf.Tensor:
    return tf.maximum(tf.reduce_sum(tf.cast(positive, tf.float32)), 1.0)


def focal_loss(class_targets, class_logits, alpha: float = 0.25, gamma: float = 2.0) -> tf.Tensor:
    """RetinaNet's sigmoid focal loss.

    ``class_logits [B, A, K]`` (no background column). Each anchor's target is the one-hot
    of its class (all zeros for background); per logit ``-alpha_t (1 - p_t)^gamma
    log(p_t)`` with ``alpha_t = alpha`` on the target class and ``1 - alpha`` elsewhere.
    Ignored anchors (``-1``) add nothing. Summed, divided by the number of positives.
    """
    class_logits = tf.convert_to_tensor(class_logits, tf.float32)
    num_classes = class_logits.shape[-1]
    class_targets = _targets(class_targets)
    labels = tf.one_hot(class_targets, num_classes, dtype=tf.float32)  # background and -1: all zeros
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=class_logits)
    probability = tf.sigmoid(class_logits)
    p_t = labels * probability + (1 - labels) * (1 - probability)
    alpha_t = labels * alpha + (1 - labels) * (1 - alpha)
    per_anchor = tf.reduce_sum(alpha_t * (1 - p_t) ** gamma * cross_entropy, axis=-1)
    per_anchor = tf.where(class_targets == IGNORE, 0.0, per_anchor)
    return tf.reduce_sum(per_anchor) / _num_positives(positive_mask(class_targets, num_classes))


def box_regression_loss(box_targets, box_predictions, class_targets, num_classes: int, delta: float = 1.0) -> tf.Tensor:
    """Huber loss on the encoded boxes of positive anchors (smooth L1 when ``delta`` is 1, as in SSD).

    ``box_targets`` and ``box_predictions [B, A, 4]`` are ``(ty, tx, th, tw)``; per
    coordinate ``0.5 x²`` for ``|x| <= delta``, else ``delta (|x| - delta / 2)``, summed
    over the 4 coordinates of the positives, divided by the number of positives.
    """
    error = tf.convert_to_tensor(box_predictions, tf.float32) - tf.convert_to_tensor(box_targets, tf.float32)
    absolute = tf.abs(error)
    huber = tf.where(absolute <= delta, 0.5 * error**2, delta * (absolute - 0.5 * delta))
    positive = positive_mask(class_targets, num_classes)
    return tf.reduce_sum(tf.where(positive[..., None], huber, 0.0)) / _num_positives(positive)


def hard_negatives(
    class_targets, confidence_loss, num_classes: int, negative_ratio: float = 3.0, min_negatives_per_image: int = 0
) -> tf.Tensor:
    """bool ``[B, A]``: the background anchors SSD trains on.

    Per image, the ``max(floor(negative_ratio * positives), min_negatives_per_image)``
    background anchors (at most all of them) with the highest ``confidence_loss [B, A]``;
    equal losses go to the lower anchor index.
    """
    class_targets = _targets(class_targets)
    negative = class_targets == num_classes
    positives = tf.reduce_sum(tf.cast(positive_mask(class_targets, num_classes), tf.float32), axis=1)
    wanted = tf.maximum(tf.floor(negative_ratio * positives), float(min_negatives_per_image))
    keep = tf.minimum(tf.cast(wanted, tf.int32), tf.reduce_sum(tf.cast(negative, tf.int32), axis=1))
    # Confidence losses are >= 0: -1 ranks every other anchor after all the negatives.
    ranked = tf.where(negative, tf.convert_to_tensor(confidence_loss, tf.float32), -1.0)
    order = tf.argsort(ranked, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    return negative & (rank < keep[:, None])


def multibox_confidence_loss(
    class_targets, class_logits, negative_ratio: float = 3.0, min_negatives_per_image: int = 0
) -> tf.Tensor:
    """SSD's confidence loss: softmax cross-entropy on positives and hard-mined negatives.

    ``class_logits [B, A, K + 1]`` with **column 0 background** (the layout
    ``TFLite_Detection_PostProcess`` and MediaPipe expect), so class ``c`` is column
    ``c + 1``. Negatives are chosen by :func:`hard_negatives` (3:1 by default); ignored
    anchors take no part. Summed, divided by the number of positives.
    """
    class_logits = tf.convert_to_tensor(class_logits, tf.float32)
    num_classes = class_logits.shape[-1] - 1
    class_targets = _targets(class_targets)
    columns = tf.where((class_targets == num_classes) | (class_targets < 0), 0, class_targets + 1)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=columns, logits=class_logits)
    positive = positive_mask(class_targets, num_classes)
    selected = positive | hard_negatives(
        class_targets, cross_entropy, num_classes, negative_ratio, min_negatives_per_image
    )
    return tf.reduce_sum(tf.where(selected, cross_entropy, 0.0)) / _num_positives(positive)


def multibox_loss(
    class_targets,
    class_logits,
    box_targets,
    box_predictions,
    negative_ratio: float = 3.0,
    box_weight: float = 1.0,
    min_negatives_per_image: int = 0,
) -> tf.Tensor:
    """SSD's MultiBox loss: :func:`multibox_confidence_loss` + ``box_weight`` x smooth L1
    (:func:`box_regression_loss` with ``delta`` 1). ``class_logits [B, A, K + 1]``, column 0 background."""
    num_classes = class_logits.shape[-1] - 1
    return multibox_confidence_loss(
        class_targets, class_logits, negative_ratio, min_negatives_per_image
    ) + box_weight * box_regression_loss(box_targets, box_predictions, class_targets, num_classes)
