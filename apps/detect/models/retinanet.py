"""RetinaNet (Lin et al. 2017, "Focal Loss for Dense Object Detection") on any backbone and neck.

Backbone features ``C3..C5`` -> a neck of :mod:`vision_core.necks` (``fpn`` or ``rcnet``)
-> pyramid levels ``P3..P7`` (strides 8..128) -> the shared class and box subnets of
:func:`apps.detect.models.heads.retinanet_head` on the chosen ``levels``. Anchors:
:class:`vision_core.detection.anchors.RetinaNetAnchors`. Class logits ``[B, A, K]``
(sigmoid, focal loss; no background column).
"""

from __future__ import annotations

from apps.detect.models.heads import retinanet_head
from vision_core.necks import build_neck


def retinanet(
    backbone,
    num_classes: int,
    anchors_per_location: int,
    *,
    neck: str = "fpn",
    neck_channels: int = 256,
    levels: tuple[int, ...] = (3, 4, 5, 6, 7),
    head_depth: int = 4,
    head_channels: int = 256,
    head_norm: bool = False,
):
    """RetinaNet on a feature model ``backbone``: ``(box_encodings, class_logits)`` tensors."""
    pyramid = build_neck(neck, backbone.output, neck_channels)
    return retinanet_head(
        [pyramid[f"P{level}"] for level in levels],
        num_classes,
        anchors_per_location,
        head_depth,
        head_channels,
        head_norm,
    )
