"""Box formats, IoU, anchor matching and the one box encoding shared by SSD and RetinaNet.

Box format: unless a docstring says otherwise, a box that crosses a function boundary is
**xyxy in absolute pixels, float32 ``[..., 4]``** = ``(xmin, ymin, xmax, ymax)``. Other
formats, by name: ``xywh`` = ``(xmin, ymin, width, height)``, ``cxcywh`` = ``(x centre,
y centre, width, height)``, ``yxyx`` = ``(ymin, xmin, ymax, xmax)`` (TensorFlow's and the
TFLite post-process op's order). *Normalised* boxes divide x by the image width and y by
the image height.

Encoding (:func:`encode_boxes`): centre-size deltas ``(ty, tx, th, tw)`` relative to the
anchor, multiplied by :data:`BOX_SCALES` = ``(10, 10, 5, 5)`` for (y, x, h, w) — SSD's
variances ``(0.1, 0.1, 0.2, 0.2)`` written as the ``y_scale, x_scale, h_scale, w_scale``
of ``TFLite_Detection_PostProcess``, so that op decodes both SSD and RetinaNet heads.
The deltas are scale-invariant: encoding against pixel anchors or normalised anchors
gives the same numbers.

Everything here is TensorFlow ops (graph-safe, usable inside ``tf.data``). Inputs may be
numpy arrays or tensors; outputs are ``tf.Tensor`` (``np.asarray`` them for numpy).
"""

from __future__ import annotations

from vision_core.backend import tf

BOX_SCALES = (10.0, 10.0, 5.0, 5.0)
FORMATS = ("xyxy", "xywh", "cxcywh", "yxyx")
# Class target of an anchor that takes no part in the classification loss.
IGNORE = -1
# match_anchors states.
POSITIVE, NEGATIVE, IGNORED = 1, 0, -1


def _as_boxes(boxes) -> tf.Tensor:
    return tf.convert_to_tensor(boxes, tf.float32)


def _xyxy_from(boxes, source: str) -> tf.Tensor:
    a, b, c, d = tf.unstack(_as_boxes(boxes), 4, axis=-1)
    return {
        "xyxy": lambda: (a, b, c, d),
        "xywh": lambda: (a, b, a + c, b + d),
        "cxcywh": lambda: (a - c / 2, b - d / 2, a + c / 2, b + d / 2),
        "yxyx": lambda: (b, a, d, c),
    }[source]()


def _xyxy_to(xmin, ymin, xmax, ymax, target: str) -> tf.Tensor:
    return tf.stack(
        {
            "xyxy": lambda: (xmin, ymin, xmax, ymax),
            "xywh": lambda: (xmin, ymin, xmax - xmin, ymax - ymin),
            "cxcywh": lambda: ((xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin),
            "yxyx": lambda: (ymin, xmin, ymax, xmax),
        }[target](),
        axis=-1,
    )


def convert_format(boxes, source: str, target: str) -> tf.Tensor:
    """Boxes ``[..., 4]`` in format ``source`` -> the same boxes in format ``target``.

    Formats: ``xyxy``, ``xywh``, ``cxcywh``, ``yxyx`` (see the module docstring). Units
    are unchanged (pixels stay pixels, normalised stays normalised); float32 out.
    """
    for name in (source, target):
        if name not in FORMATS:
            raise ValueError(f"unknown box format {name!r}: expected one of {', '.join(FORMATS)}")
    return _xyxy_to(*_xyxy_from(boxes, source), target)


def _size_per_coordinate(image_size, box_format: str) -> tf.Tensor:
    height, width = (float(s) for s in image_size)
    return tf.constant((height, width) * 2 if box_format == "yxyx" else (width, height) * 2, tf.float32)


def to_normalized(boxes, image_size: tuple[int, int], box_format: str = "xyxy") -> tf.Tensor:
    """Pixel boxes ``[..., 4]`` in ``box_format`` -> normalised (x / width, y / height), same format.

    ``image_size`` is ``(height, width)`` in pixels.
    """
    return _as_boxes(boxes) / _size_per_coordinate(image_size, box_format)


def to_pixels(boxes, image_size: tuple[int, int], box_format: str = "xyxy") -> tf.Tensor:
    """Normalised boxes ``[..., 4]`` in ``box_format`` -> pixels, same format. ``image_size`` = ``(height, width)``."""
    return _as_boxes(boxes) * _size_per_coordinate(image_size, box_format)


def box_area(boxes) -> tf.Tensor:
    """Areas ``[...]`` of xyxy boxes ``[..., 4]``; inverted boxes count as 0."""
    xmin, ymin, xmax, ymax = tf.unstack(_as_boxes(boxes), 4, axis=-1)
    return tf.maximum(xmax - xmin, 0.0) * tf.maximum(ymax - ymin, 0.0)


def pairwise_iou(boxes_a, boxes_b) -> tf.Tensor:
    """IoU ``[N, M]`` float32 between xyxy boxes ``boxes_a [N, 4]`` and ``boxes_b [M, 4]`` (any one unit).

    A pair where either box has no area has IoU 0 (as in ``TFLite_Detection_PostProcess``).
    """
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    top_left = tf.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = tf.minimum(a[:, None, 2:], b[None, :, 2:])
    overlap = tf.reduce_prod(tf.maximum(bottom_right - top_left, 0.0), axis=-1)
    area_a, area_b = box_area(a), box_area(b)
    union = area_a[:, None] + area_b[None, :] - overlap
    has_area = (area_a[:, None] > 0) & (area_b[None, :] > 0)
    return tf.where(has_area, overlap / tf.where(has_area, union, 1.0), 0.0)


def match_anchors(
    anchors, gt_boxes, positive_threshold: float = 0.5, negative_threshold: float = 0.4, force_best_anchor: bool = True
) -> tuple[tf.Tensor, tf.Tensor]:
    """Assign every anchor to a ground-truth box by IoU.

    ``anchors [A, 4]`` and ``gt_boxes [G, 4]`` are xyxy pixels (``G`` may be 0). An anchor
    whose best IoU is ``>= positive_threshold`` is :data:`POSITIVE`, ``< negative_threshold``
    :data:`NEGATIVE`, in between :data:`IGNORED`. With ``force_best_anchor``, each box's
    highest-IoU anchor is made positive for that box too (if that IoU is above 0), so no
    box goes unmatched; when two boxes share a best anchor, the later box keeps it.

    RetinaNet: thresholds 0.5 / 0.4. SSD: 0.5 / 0.5 (no ignored band).

    Returns ``(matched_gt [A] int32, state [A] int32)``: ``matched_gt`` is the index of the
    anchor's box (0 when ``G`` is 0; meaningful only for positives).
    """
    anchors, gt_boxes = _as_boxes(anchors), _as_boxes(gt_boxes)
    num_anchors, num_gt = tf.shape(anchors)[0], tf.shape(gt_boxes)[0]
    # A zero column keeps the reductions defined when G is 0.
    iou = tf.concat([pairwise_iou(anchors, gt_boxes), tf.zeros([num_anchors, 1])], axis=1)  # [A, G + 1]
    best_iou = tf.reduce_max(iou, axis=1)
    matched = tf.argmax(iou, axis=1, output_type=tf.int32)  # ties go to the first column: never the padding
    state = tf.where(
        best_iou >= positive_threshold, POSITIVE, tf.where(best_iou < negative_threshold, NEGATIVE, IGNORED)
    )
    if force_best_anchor:
        gt_iou = iou[:, :-1]
        best_anchor = tf.argmax(gt_iou, axis=0, output_type=tf.int32)  # [G]
        forced = tf.reduce_max(gt_iou, axis=0) > 0
        best_anchor = tf.boolean_mask(best_anchor, forced)[:, None]
        gt_index = tf.boolean_mask(tf.range(num_gt), forced)
        matched = tf.tensor_scatter_nd_update(matched, best_anchor, gt_index)
        state = tf.tensor_scatter_nd_update(state, best_anchor, tf.fill(tf.shape(gt_index), POSITIVE))
    return matched, state


def encode_boxes(boxes, anchors, box_scales=BOX_SCALES) -> tf.Tensor:
    """xyxy pixel ``boxes [..., 4]`` relative to xyxy pixel ``anchors [..., 4]`` -> ``(ty, tx, th, tw)`` float32.

    ``ty = y_scale * (cy - cy_a) / h_a``, ``tx = x_scale * (cx - cx_a) / w_a``,
    ``th = h_scale * log(h / h_a)``, ``tw = w_scale * log(w / w_a)`` with
    ``box_scales = (y_scale, x_scale, h_scale, w_scale)``, default :data:`BOX_SCALES`.
    """
    cx, cy, w, h = tf.unstack(convert_format(boxes, "xyxy", "cxcywh"), 4, axis=-1)
    acx, acy, aw, ah = tf.unstack(convert_format(anchors, "xyxy", "cxcywh"), 4, axis=-1)
    y_scale, x_scale, h_scale, w_scale = box_scales
    return tf.stack(
        [
            y_scale * (cy - acy) / ah,
            x_scale * (cx - acx) / aw,
            h_scale * tf.math.log(h / ah),
            w_scale * tf.math.log(w / aw),
        ],
        axis=-1,
    )


def decode_boxes(encodings, anchors, box_scales=BOX_SCALES) -> tf.Tensor:
    """``(ty, tx, th, tw)`` ``encodings [..., 4]`` against xyxy pixel ``anchors [..., 4]`` -> xyxy pixel boxes.

    The inverse of :func:`encode_boxes`, and the decoding of ``TFLite_Detection_PostProcess``.
    """
    ty, tx, th, tw = tf.unstack(_as_boxes(encodings), 4, axis=-1)
    acx, acy, aw, ah = tf.unstack(convert_format(anchors, "xyxy", "cxcywh"), 4, axis=-1)
    y_scale, x_scale, h_scale, w_scale = box_scales
    centres_sizes = tf.stack(
        [tx / x_scale * aw + acx, ty / y_scale * ah + acy, tf.exp(tw / w_scale) * aw, tf.exp(th / h_scale) * ah],
        axis=-1,
    )
    return convert_format(centres_sizes, "cxcywh", "xyxy")


class AnchorEncoder:
    """Ground truth of one image -> per-anchor training targets, in pure TF ops (use in ``tf.data``).

    ``encoder(image, boxes, classes)`` takes the image ``[H, W, C]`` (its size must be the
    ``image_size`` the anchors were made for), ``boxes [G, 4]`` xyxy pixels and ``classes
    [G]`` ints in ``0..num_classes-1`` (``G`` may be 0; boxes without area are dropped),
    and returns::

        {"box_targets": float32 [A, 4],   # (ty, tx, th, tw) with box_scales; 0 unless positive
         "class_targets": int32 [A]}      # 0..K-1 positive, K (= num_classes) background,
                                          # -1 (IGNORE) ignored

    ``anchors [A, 4]`` are xyxy pixels (see :mod:`vision_core.detection.anchors`).
    Thresholds as in :func:`match_anchors`: RetinaNet 0.5 / 0.4 (the defaults), SSD 0.5 / 0.5.
    In ``tf.data``: ``ds.map(lambda image, boxes, classes: (image, encoder(image, boxes, classes)))``.
    """

    def __init__(
        self,
        anchors,
        image_size: tuple[int, int],
        num_classes: int,
        positive_threshold: float = 0.5,
        negative_threshold: float = 0.4,
        box_scales=BOX_SCALES,
    ):
        self.anchors = _as_boxes(anchors)
        self.image_size = tuple(int(s) for s in image_size)
        self.num_classes = int(num_classes)
        self.background = self.num_classes
        self.positive_threshold = positive_threshold
        self.negative_threshold = negative_threshold
        self.box_scales = tuple(box_scales)

    def __call__(self, image, boxes, classes) -> dict[str, tf.Tensor]:
        return self._encode(
            tf.shape(image)[:2], tf.reshape(_as_boxes(boxes), [-1, 4]), tf.reshape(tf.cast(classes, tf.int32), [-1])
        )

    @tf.function(
        input_signature=[
            tf.TensorSpec([2], tf.int32),
            tf.TensorSpec([None, 4], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ]
    )
    def _encode(self, image_size, boxes, classes):
        # A graph even when called eagerly (e.g. from tf.numpy_function): ~10x faster than op by op.
        tf.debugging.assert_equal(
            image_size, self.image_size, message="image size differs from the anchors' image_size"
        )
        has_area = box_area(boxes) > 0
        boxes, classes = tf.boolean_mask(boxes, has_area), tf.boolean_mask(classes, has_area)
        matched, state = match_anchors(self.anchors, boxes, self.positive_threshold, self.negative_threshold)
        positive = state == POSITIVE
        # An empty image has nothing to gather from: pad with one dummy box that no positive uses.
        boxes = tf.concat([boxes, [[0.0, 0.0, 1.0, 1.0]]], axis=0)
        classes = tf.concat([classes, [self.background]], axis=0)
        encoded = encode_boxes(tf.gather(boxes, matched), self.anchors, self.box_scales)
        class_targets = tf.where(
            positive, tf.gather(classes, matched), tf.where(state == NEGATIVE, self.background, IGNORE)
        )
        return {"box_targets": tf.where(positive[:, None], encoded, 0.0), "class_targets": class_targets}
