"""Where a classifier looks: Grad-CAM, integrated gradients, saliency and occlusion maps, and how alike two maps are.

Images are the model's inputs, float32 ``[N, H, W, C]`` normalised as the model takes them; a target
is a class index per image (int ``[N]``). Every map is float32 ``[H, W]`` at the input's resolution,
larger where the pixel counts more for the target class. Volumes (a volume ResNet's input ``[N, H, W, D]``,
its slices last, :mod:`vision_core.backbones.resnet3d`) have no channel axis: their maps are ``[H, W, D]``,
a value per voxel (:func:`grad_cam_volume`, ``saliency(..., volume=True)``, the attributions themselves,
and occlusion with a box over all three axes).

* :func:`grad_cam` (Selvaraju et al. 2017) — the feature map of the last convolutional layer (the
  last layer with a 4-D output, or ``layer``), weighted per channel by the spatial mean of the class
  score's gradient, summed over channels, ReLU, bilinear upsampling to ``[H, W]``.
* :func:`integrated_gradients` (Sundararajan et al. 2017) — ``(x - x') * mean of grad f along the
  straight path from the baseline x' to x``, the path integral by the trapezoid rule over ``steps``
  intervals; attributions ``[N, H, W, C]`` sum to ``f(x) - f(x')`` (completeness) up to the rule's
  error. Its map is the channel sum.
* :func:`saliency` (Simonyan et al. 2014) — ``|grad f|``, the largest over channels.
* :func:`occlusion` (Zeiler and Fergus 2014) — a ``patch`` x ``patch`` square filled with ``fill``
  slides with ``stride`` over the image; each pixel gets the mean drop of the target class
  probability over the patches that cover it (negative where hiding it raised the probability).
  It needs only ``probabilities(images) -> [N, K]``, so it runs on any form of the model (Keras,
  int8 TFLite, ONNX). On a volume the patch is a ``patch x patch x depth`` box sliding over all three axes.
* :func:`grad_cam_volume` — Grad-CAM of a volume network, whose feature maps hold each volume's slices in
  the batch (``[N*D', h, w, c]``): the class score's gradient averaged over ``D' x h x w`` per channel,
  the weighted channel sum, ReLU, upsampled to ``[H, W, D]`` (bilinear in-plane, then linear across slices).

The gradient methods take a Keras model and differentiate its output for the class (``f``: the
logit for the models of a run, which end in logits, as Grad-CAM and MONAI score them).
:func:`rank_correlation` (Spearman's rho, ties at their mean rank) and :func:`top_k_overlap`
compare two maps, e.g. occlusion on the float and on the int8 model.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from vision_core.backend import keras, tf

GRADIENT_METHODS = ("gradcam", "integrated_gradients", "saliency")
METHODS = (*GRADIENT_METHODS, "occlusion")


def last_feature_layer(model: keras.Model) -> str:
    """The name of the last layer of ``model`` whose output is a 4-D feature map ``[N, h, w, c]`` (Grad-CAM's)."""
    for layer in reversed(model.layers):
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        if len(outputs) == 1 and len(outputs[0].shape) == 4 and not isinstance(layer, keras.layers.InputLayer):
            return layer.name
    raise ValueError(f"{model.name}: no layer with a 4-D feature-map output for Grad-CAM")


def _target_scores(scores: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    return tf.gather(scores, targets, axis=1, batch_dims=1)


def _check(images: np.ndarray, targets: Sequence[int]) -> tuple[tf.Tensor, tf.Tensor]:
    images = np.asarray(images, np.float32)
    targets = np.asarray(targets, np.int32).reshape(-1)
    if images.ndim != 4 or len(targets) != len(images):
        raise ValueError(f"expected images [N, H, W, C] and N targets, got {images.shape} and {len(targets)}")
    return tf.constant(images), tf.constant(targets)


def _output(model: keras.Model, outputs) -> tf.Tensor:
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def grad_cam(model: keras.Model, images: np.ndarray, targets: Sequence[int], layer: str | None = None) -> np.ndarray:
    """Grad-CAM maps float32 ``[N, H, W]`` (non-negative) of ``targets`` on ``layer`` (None: the last feature map)."""
    x, t = _check(images, targets)
    features_layer = model.get_layer(layer or last_feature_layer(model))
    cam_model = keras.Model(model.inputs, [features_layer.output, *model.outputs])
    with tf.GradientTape() as tape:
        features, *outputs = cam_model(x, training=False)
        score = _target_scores(outputs[0], t)
    gradients = tape.gradient(score, features)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
    return tf.image.resize(cam, x.shape[1:3], method="bilinear").numpy()[..., 0].astype(np.float32)


def volume_features_layer(model: keras.Model) -> keras.layers.Layer:
    """The :class:`~vision_core.layers.volume.SlicesToRows` layer of a volume network: its input is the last
    feature map with the slices folded into the batch (Grad-CAM's)."""
    from vision_core.layers.volume import SlicesToRows

    for layer in reversed(model.layers):
        if isinstance(layer, SlicesToRows):
            return layer
    raise ValueError(f"{model.name}: no SlicesToRows layer; not a volume network (give the Grad-CAM layer)")


def grad_cam_volume(
    model: keras.Model, volumes: np.ndarray, targets: Sequence[int], layer: str | None = None
) -> np.ndarray:
    """Grad-CAM maps float32 ``[N, H, W, D]`` (non-negative) of a volume network's ``targets``.

    ``layer`` names a layer whose output holds the slices in the batch, ``[N*D', h, w, c]`` (None: the
    input of the network's :class:`~vision_core.layers.volume.SlicesToRows`, its last feature map).
    """
    x, t = _check(volumes, targets)
    features = model.get_layer(layer).output if layer else volume_features_layer(model).input
    if len(features.shape) != 4:
        raise ValueError(f"{layer}: Grad-CAM of a volume needs a feature map [N*D', h, w, c], got {features.shape}")
    cam_model = keras.Model(model.inputs, [features, *model.outputs])
    with tf.GradientTape() as tape:
        folded, *outputs = cam_model(x, training=False)
        score = _target_scores(outputs[0], t)
    gradients = tape.gradient(score, folded)
    count, (height, width, depth) = x.shape[0], x.shape[1:]
    slices = folded.shape[0] // count  # D' feature slices per volume
    unfolded = tf.reshape(folded, (count, slices, *folded.shape[1:]))
    weights = tf.reduce_mean(tf.reshape(gradients, unfolded.shape), axis=(1, 2, 3), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * unfolded, axis=-1))  # [N, D', h, w]
    cam = tf.image.resize(tf.transpose(cam, (0, 2, 3, 1)), (height, width), method="bilinear")  # [N, H, W, D']
    cam = tf.image.resize(tf.reshape(cam, (count, height * width, slices, 1)), (height * width, depth))
    return tf.reshape(cam, (count, height, width, depth)).numpy().astype(np.float32)


def input_gradients(model: keras.Model, images: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """``d f_target / d image``, float32 ``[N, H, W, C]``."""
    x, t = _check(images, targets)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = _target_scores(_output(model, model(x, training=False)), t)
    return tape.gradient(score, x).numpy()


def saliency(model: keras.Model, images: np.ndarray, targets: Sequence[int], volume: bool = False) -> np.ndarray:
    """Saliency maps float32 ``[N, H, W]``: ``|d f / d x|``, the largest over channels (``volume``: ``[N, H, W, D]``,
    one value per voxel)."""
    magnitudes = np.abs(input_gradients(model, images, targets))
    return magnitudes if volume else magnitudes.max(axis=-1)


def integrated_gradients(
    model: keras.Model,
    images: np.ndarray,
    targets: Sequence[int],
    baseline: float | np.ndarray = 0.0,
    steps: int = 32,
    batch_size: int = 33,
) -> np.ndarray:
    """Integrated-gradients attributions float32 ``[N, H, W, C]`` of ``targets`` from ``baseline``.

    ``baseline``: the input x' the path starts at (a number, or an array broadcast to one image), in
    normalised units (black is ``-mean / std``). The path integral is the trapezoid rule over
    ``steps`` equal intervals (``steps + 1`` gradients per image, ``batch_size`` at a time).
    """
    if steps < 1:
        raise ValueError(f"steps {steps}: must be at least 1")
    images = np.asarray(images, np.float32)
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    weights = np.full(steps + 1, 1.0 / steps, np.float32)
    weights[[0, -1]] /= 2
    attributions = []
    for image, target in zip(images, np.asarray(targets).reshape(-1)):
        start = np.broadcast_to(np.asarray(baseline, np.float32), image.shape)
        path = start + alphas[:, None, None, None] * (image - start)
        gradients = np.concatenate(
            [
                input_gradients(model, path[i : i + batch_size], [target] * len(path[i : i + batch_size]))
                for i in range(0, len(path), batch_size)
            ]
        )
        attributions.append((image - start) * np.tensordot(weights, gradients, axes=1))
    return np.stack(attributions).astype(np.float32)


def patch_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets of ``patch``-wide windows ``stride`` apart over ``size`` pixels; the last one ends at the edge."""
    if not 1 <= patch <= size or stride < 1:
        raise ValueError(f"patch {patch} must be within 1..{size} pixels and stride {stride} at least 1")
    starts = list(range(0, size - patch + 1, stride))
    return starts if starts[-1] == size - patch else [*starts, size - patch]


def occlusion(
    probabilities: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    targets: Sequence[int],
    patch: int | Sequence[int] = 16,
    stride: int | Sequence[int] = 8,
    fill: float | np.ndarray = 0.0,
    batch_size: int = 64,
) -> np.ndarray:
    """Occlusion maps float32 ``[T, H, W]`` of one ``image`` ``[H, W, C]``, one per class of ``targets``.

    ``probabilities``: normalised images ``[B, H, W, C]`` -> class probabilities ``[B, K]``; ``fill``: the
    value (normalised units, a number or one per channel) the patch is filled with. ``patch`` and ``stride``
    are in pixels: one number (a square over ``H, W``) or one per leading axis, e.g. ``(h, w, d)`` for a
    volume ``[H, W, D]``, whose maps are then ``[T, H, W, D]`` (the box covers what it spans of every axis).
    """
    image = np.asarray(image, np.float32)
    patch = (patch, patch) if isinstance(patch, (int, np.integer)) else tuple(int(p) for p in patch)
    stride = (stride,) * len(patch) if isinstance(stride, (int, np.integer)) else tuple(int(s) for s in stride)
    if len(stride) != len(patch) or len(patch) > image.ndim:
        raise ValueError(f"patch {patch} and stride {stride}: one size per leading axis of the {image.shape} input")
    sides = image.shape[: len(patch)]
    corners = list(itertools.product(*(patch_starts(n, p, s) for n, p, s in zip(sides, patch, stride))))
    boxes = [tuple(slice(c, c + p) for c, p in zip(corner, patch)) for corner in corners]
    targets = np.asarray(targets, np.int64).reshape(-1)
    reference = np.asarray(probabilities(image[None]))[0, targets]
    drops = np.zeros((len(targets), *sides), np.float64)
    covered = np.zeros(sides, np.float64)
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start : start + batch_size]
        batch = np.repeat(image[None], len(chunk), axis=0)
        for occluded, box in zip(batch, chunk):
            occluded[box] = fill
        scores = np.asarray(probabilities(batch))[:, targets]
        for box, score in zip(chunk, scores):
            drops[(slice(None), *box)] += (reference - score).reshape(-1, *[1] * len(sides))
            covered[box] += 1
    return (drops / covered).astype(np.float32)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, tied values at the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman's rank correlation of two maps of one shape (ties at their mean rank); NaN if one is constant."""
    first, second = np.asarray(first, np.float64).ravel(), np.asarray(second, np.float64).ravel()
    if first.shape != second.shape:
        raise ValueError(f"maps of {first.size} and {second.size} values cannot be compared")
    a, b = _average_ranks(first), _average_ranks(second)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def top_k_overlap(first: np.ndarray, second: np.ndarray, fraction: float = 0.1) -> float:
    """The share of the ``fraction`` highest pixels of ``first`` that are also among the highest of ``second``
    (ties broken by pixel order)."""
    first, second = np.asarray(first).ravel(), np.asarray(second).ravel()
    if first.shape != second.shape or not 0 < fraction <= 1:
        raise ValueError(f"maps of {first.size} and {second.size} values, fraction {fraction}: cannot compare")
    k = max(1, round(fraction * first.size))
    top_first = np.argsort(-first, kind="stable")[:k]
    top_second = np.argsort(-second, kind="stable")[:k]
    return len(np.intersect1d(top_first, top_second)) / k
