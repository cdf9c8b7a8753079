"""The detect app's losses, on the targets its datasets yield per output.

Targets (see :meth:`apps.detect.task.DetectTask.datasets`), keyed like the model's outputs:

* ``box_encodings``: float32 ``[B, A, 5]`` = encoded box targets ``(ty, tx, th, tw)`` and,
  in column 4, the anchor's class target (so the box loss knows the positives);
* ``class_logits``: ``[B, A]`` class targets — ``0..K-1`` positive, ``K`` background,
  ``-1`` ignored (:class:`vision_core.detection.boxes.AnchorEncoder`).

RetinaNet: focal loss + smooth L1; SSD: MultiBox confidence loss with hard-negative mining +
smooth L1. Smooth L1 (Huber, delta 1) acts on encodings scaled by ``BOX_SCALES``. Every loss
is normalised by the positive anchors of the batch.
"""

from __future__ import annotations

from vision_core.backend import tf
from vision_core.detection.losses import (
    box_regression_loss,
    focal_loss,
    multibox_confidence_loss,
)

BOX_TARGET_COLUMNS = 4


def split_box_targets(targets):
    """``[B, A, 5]`` -> ``(box targets [B, A, 4], class targets [B, A])``."""
    targets = tf.convert_to_tensor(targets, tf.float32)
    return targets[..., :BOX_TARGET_COLUMNS], targets[..., BOX_TARGET_COLUMNS]


class BoxLoss:
    """Keras loss of the ``box_encodings`` output: smooth L1 on the positives, times ``weight``."""

    def __init__(self, num_classes: int, weight: float = 1.0):
        self.num_classes, self.weight = int(num_classes), float(weight)
        self.__name__ = "box_loss"

    def __call__(self, y_true, y_pred):
        box_targets, class_targets = split_box_targets(y_true)
        return self.weight * box_regression_loss(box_targets, y_pred, class_targets, self.num_classes)


class ClassLoss:
    """Keras loss of the ``class_logits`` output: focal (sigmoid heads) or MultiBox confidence (softmax heads)."""

    def __init__(self, softmax: bool, focal_alpha: float = 0.25, focal_gamma: float = 2.0, negative_ratio: float = 3.0):
        self.softmax = bool(softmax)
        self.focal_alpha, self.focal_gamma, self.negative_ratio = (
            float(focal_alpha),
            float(focal_gamma),
            float(negative_ratio),
        )
        self.__name__ = "class_loss"

    def __call__(self, y_true, y_pred):
        if self.softmax:
            return multibox_confidence_loss(y_true, y_pred, self.negative_ratio)
        return focal_loss(y_true, y_pred, self.focal_alpha, self.focal_gamma)


def detection_loss(
    targets: dict,
    outputs: dict,
    *,
    softmax: bool,
    num_classes: int,
    box_weight: float = 1.0,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    negative_ratio: float = 3.0,
):
    """The whole loss on target and output dicts (the QAT job's ``loss`` form): class loss + box loss."""
    box = BoxLoss(num_classes, box_weight)(targets["box_encodings"], outputs["box_encodings"])
    classes = ClassLoss(softmax, focal_alpha, focal_gamma, negative_ratio)(
        targets["class_logits"], outputs["class_logits"]
    )
    return box + classes
