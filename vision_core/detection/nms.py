"""Detector outputs -> final detections: box decoding, per-class NMS, and the TFLite tail.

Two consumers, one behaviour:

* :func:`decode_detections` — for Keras / numpy evaluation. Encodings ``(ty, tx, th, tw)``
  against xyxy pixel anchors in, **xyxy pixel** boxes out.
* :func:`tflite_detection_postprocess` — the detector tail of an export: a ``tf.function``
  carrying ``experimental_implements`` attributes that the TFLite converter replaces with
  the ``TFLite_Detection_PostProcess`` custom op (with ``allow_custom_ops=True``). Its
  outputs follow that op: boxes ``(ymin, xmin, ymax, xmax)`` **normalised**, classes,
  scores, num_detections. Its TF body computes the same thing with :func:`multiclass_nms`,
  so the Keras / SavedModel graph already returns what the converted op returns.

NMS follows the op's regular (per-class) mode: per class, candidates with score ``>=
score_threshold`` go through greedy NMS (a box overlapping a kept one with IoU ``>
iou_threshold`` is dropped) keeping ``detections_per_class``; the survivors of all classes
are ranked by score and the best ``max_detections`` kept. Built on
``tf.image.non_max_suppression`` per class (not ``combined_non_max_suppression``, a Flex op
in TFLite). Detections of equal score may come in another order than the op's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vision_core.backend import tf
from vision_core.detection.boxes import BOX_SCALES, convert_format, decode_boxes

POSTPROCESS_OP = "TFLite_Detection_PostProcess"
# Regular NMS keeps this many per class: the op's default, and what it uses after conversion
# (TF 2.21's converter does not pass a ``detections_per_class`` attribute on to the op).
OP_DETECTIONS_PER_CLASS = 100
OUTPUT_NAMES = ("boxes", "classes", "scores", "num_detections")


def _strictly_above(threshold: float) -> np.float32:
    """The float32 just below ``threshold``: TF's NMS keeps ``score > t``, the TFLite op ``score >= threshold``."""
    return np.nextafter(np.float32(threshold), np.float32(-np.inf))


def multiclass_nms(
    boxes,
    scores,
    max_detections: int = 100,
    detections_per_class: int = 100,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    class_agnostic: bool = False,
) -> dict[str, tf.Tensor]:
    """Per-class NMS over a batch.

    ``boxes [B, A, 4]``: xyxy, any one unit (IoU does not depend on it); ``scores [B, A, K]``
    probabilities. ``class_agnostic`` runs one NMS on each box's best class score instead
    (the op's fast mode with one class per detection). Returns, padded to
    ``max_detections`` with zeros past ``num_detections``::

        {"boxes": float32 [B, D, 4] (same format and unit as ``boxes``),
         "scores": float32 [B, D], sorted by decreasing score,
         "classes": int32 [B, D] in 0..K-1,
         "num_detections": int32 [B]}
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.convert_to_tensor(scores, tf.float32)
    num_anchors = boxes.shape[1]
    best_class = tf.argmax(scores, axis=-1, output_type=tf.int32)  # [B, A]
    if class_agnostic:
        scores = tf.reduce_max(scores, axis=-1, keepdims=True)
    num_classes = scores.shape[-1]
    per_class = min(detections_per_class, num_anchors)

    class_scores = tf.transpose(scores, [0, 2, 1])  # [B, K, A]
    # Only boxes above the threshold can be kept: NMS runs on each class's best ones, as many as the
    # class with the most such boxes has (exact, and fast when most scores are low).
    above = tf.reduce_sum(tf.cast(class_scores >= np.float32(score_threshold), tf.int32), axis=-1)
    best = tf.math.top_k(class_scores, tf.maximum(tf.reduce_max(above), 1))  # ties: lower anchor first
    selected, valid = _nms_per_row(
        tf.gather(boxes, best.indices, batch_dims=1), best.values, per_class, iou_threshold, score_threshold
    )  # [B, K, per_class], [B, K]
    kept_scores = tf.where(
        tf.range(per_class) < valid[..., None], tf.gather(best.values, selected, batch_dims=2), -1.0
    )  # -1: no detection
    selected = tf.gather(best.indices, selected, batch_dims=2)  # anchor indices

    candidates = num_classes * per_class
    top = tf.math.top_k(tf.reshape(kept_scores, [-1, candidates]), min(max_detections, candidates))
    anchor = tf.gather(tf.reshape(selected, [-1, candidates]), top.indices, batch_dims=1)
    is_detection = top.values >= 0
    classes = tf.gather(best_class, anchor, batch_dims=1) if class_agnostic else top.indices // per_class
    padding = [[0, 0], [0, max_detections - top.indices.shape[-1]]]
    return {
        "boxes": tf.pad(
            tf.where(is_detection[..., None], tf.gather(boxes, anchor, batch_dims=1), 0.0), padding + [[0, 0]]
        ),
        "scores": tf.pad(tf.where(is_detection, top.values, 0.0), padding),
        "classes": tf.pad(tf.where(is_detection, classes, 0), padding),
        "num_detections": tf.reduce_sum(tf.cast(is_detection, tf.int32), axis=-1),
    }


def _nms_per_row(boxes, scores, max_output: int, iou_threshold: float, score_threshold: float):
    """Greedy NMS of every row of ``boxes [B, K, N, 4]`` / ``scores [B, K, N]`` ->
    ``(indices [B, K, max_output] int32 zero-padded, counts [B, K] int32)``."""
    rows = tf.shape(scores)[:2]
    num_boxes = tf.shape(scores)[-1]

    def one_row(row):
        row_boxes, row_scores = row
        # The greedy CPU kernel (non_max_suppression_padded's batched algorithm is ~30x slower on CPU);
        # it reads boxes as yxyx, but IoU does not depend on the axis order.
        kept = tf.image.non_max_suppression(
            row_boxes, row_scores, max_output, iou_threshold, _strictly_above(score_threshold)
        )
        count = tf.size(kept)
        return tf.pad(kept, [[0, max_output - count]]), count

    indices, counts = tf.map_fn(
        one_row,
        (tf.reshape(boxes, [-1, num_boxes, 4]), tf.reshape(scores, [-1, num_boxes])),
        fn_output_signature=(tf.TensorSpec([max_output], tf.int32), tf.TensorSpec([], tf.int32)),
    )
    return tf.reshape(indices, tf.concat([rows, [max_output]], 0)), tf.reshape(counts, rows)


def decode_detections(
    box_encodings, class_scores, anchors, *, background_column: bool = False, box_scales=BOX_SCALES, **nms_options
) -> dict[str, tf.Tensor]:
    """Raw head outputs of a batch -> detections with **xyxy pixel** boxes.

    ``box_encodings [B, A, 4]``: ``(ty, tx, th, tw)`` scaled by ``box_scales`` (see
    :func:`vision_core.detection.boxes.encode_boxes`); ``class_scores [B, A, K]``
    probabilities (sigmoid), or ``[B, A, K + 1]`` with column 0 background when
    ``background_column`` (softmax SSD heads; that column is dropped); ``anchors [A, 4]``
    xyxy pixels. ``nms_options`` go to :func:`multiclass_nms`, whose dict this returns.
    """
    boxes = decode_boxes(box_encodings, tf.convert_to_tensor(anchors, tf.float32)[None], box_scales)
    class_scores = tf.convert_to_tensor(class_scores, tf.float32)
    if background_column:
        class_scores = class_scores[..., 1:]
    return multiclass_nms(boxes, class_scores, **nms_options)


@dataclass(frozen=True)
class PostProcessConfig:
    """Attributes of ``TFLite_Detection_PostProcess``.

    ``num_classes`` excludes background. ``use_regular_nms`` selects per-class NMS (default,
    equal to :func:`decode_detections`) or the op's faster class-agnostic NMS.
    ``box_scales`` = ``(y_scale, x_scale, h_scale, w_scale)``. Fixed: one class per
    detection (``max_classes_per_detection`` 1) and :data:`OP_DETECTIONS_PER_CLASS` per class.
    """

    num_classes: int
    max_detections: int = 100
    score_threshold: float = 0.05
    iou_threshold: float = 0.5
    use_regular_nms: bool = True
    box_scales: tuple[float, float, float, float] = BOX_SCALES

    def implements_signature(self) -> str:
        """The ``experimental_implements`` string the TFLite converter turns into the op's options."""
        y_scale, x_scale, h_scale, w_scale = self.box_scales
        attributes = [
            ("max_detections", "i", self.max_detections),
            ("max_classes_per_detection", "i", 1),
            ("detections_per_class", "i", OP_DETECTIONS_PER_CLASS),
            ("use_regular_nms", "b", str(self.use_regular_nms).lower()),
            ("nms_score_threshold", "f", f"{self.score_threshold:f}"),
            ("nms_iou_threshold", "f", f"{self.iou_threshold:f}"),
            ("y_scale", "f", f"{y_scale:f}"),
            ("x_scale", "f", f"{x_scale:f}"),
            ("h_scale", "f", f"{h_scale:f}"),
            ("w_scale", "f", f"{w_scale:f}"),
            ("num_classes", "i", self.num_classes),
        ]
        return " ".join(
            [f'name: "{POSTPROCESS_OP}"']
            + [f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}' for key, kind, value in attributes]
        )


def op_anchors(anchors, image_size: tuple[int, int]) -> np.ndarray:
    """xyxy pixel ``anchors [A, 4]`` -> the op's anchors: ``(ycenter, xcenter, h, w)`` normalised, float32."""
    xmin, ymin, xmax, ymax = np.moveaxis(np.asarray(anchors, np.float64), -1, 0)
    height, width = image_size
    return np.stack(
        [(ymin + ymax) / 2 / height, (xmin + xmax) / 2 / width, (ymax - ymin) / height, (xmax - xmin) / width], axis=-1
    ).astype(np.float32)


def tflite_detection_postprocess(
    box_encodings, class_scores, anchors, image_size: tuple[int, int], config: PostProcessConfig
) -> dict[str, tf.Tensor]:
    """The ``TFLite_Detection_PostProcess`` tail of a batch-1 detector.

    ``box_encodings [1, A, 4]`` ``(ty, tx, th, tw)`` with ``config.box_scales``;
    ``class_scores [1, A, K]`` sigmoid probabilities, or ``[1, A, K + 1]`` with column 0
    background (the op skips the leading ``C - num_classes`` columns); ``anchors [A, 4]``
    xyxy pixels of an ``(height, width)`` = ``image_size`` input. Returns the op's outputs::

        {"boxes": float32 [1, D, 4] (ymin, xmin, ymax, xmax) normalised to the input,
         "classes": float32 [1, D] in 0..K-1, "scores": float32 [1, D],
         "num_detections": float32 [1]}

    with ``D = config.max_detections``. Rows past ``num_detections`` are zeros here and in the
    op's regular mode; the op's fast mode leaves them unwritten (read only ``num_detections`` rows).
    """
    implements = tf.function(_postprocess_body(config), experimental_implements=config.implements_signature())
    outputs = implements(
        tf.convert_to_tensor(box_encodings, tf.float32),
        tf.convert_to_tensor(class_scores, tf.float32),
        tf.constant(op_anchors(anchors, image_size)),
    )
    return dict(zip(OUTPUT_NAMES, outputs))


def _postprocess_body(config: PostProcessConfig):
    """What the op computes, in TF: the converter drops this body and keeps only the op."""

    def postprocess(box_encodings, class_scores, anchors):
        anchors_xyxy = convert_format(tf.gather(anchors, [1, 0, 3, 2], axis=-1), "cxcywh", "xyxy")
        boxes = decode_boxes(box_encodings, anchors_xyxy[None], config.box_scales)  # xyxy normalised
        class_scores = class_scores[..., class_scores.shape[-1] - config.num_classes :]
        # Fast mode runs one NMS that keeps up to max_detections.
        per_class = OP_DETECTIONS_PER_CLASS if config.use_regular_nms else config.max_detections
        detections = multiclass_nms(
            boxes,
            class_scores,
            config.max_detections,
            per_class,
            config.score_threshold,
            config.iou_threshold,
            class_agnostic=not config.use_regular_nms,
        )
        return (
            convert_format(detections["boxes"], "xyxy", "yxyx"),
            tf.cast(detections["classes"], tf.float32),
            detections["scores"],
            tf.cast(detections["num_detections"], tf.float32),
        )

    return postprocess
