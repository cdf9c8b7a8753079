"""Where a classifier looks: Grad-CAM, integrated gradients, saliency and occlusion maps, and how alike two maps are.

Images are the model's inputs, float32 ``[N, H, W, C]`` normalised as the model takes them; a target
is a class index per image (int ``[N]``). Every map is float32 ``[H, W]`` at the input's resolution,
larger where the pixel counts more for the target class:

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
  int8 TFLite, ONNX).

The gradient methods take a Keras model and differentiate its output for the class (``f``: the
logit for the models of a run, which end in logits, as Grad-CAM and MONAI score them).
:func:`rank_correlation` (Spearman's rho, ties at their mean rank) and :func:`top_k_overlap`
compare two maps, e.g. occlusion on the float and on the int8 model.
"""

from __future__ import annotations

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


def input_gradients(model: keras.Model, images: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """``d f_target / d image``, float32 ``[N, H, W, C]``."""
    x, t = _check(images, targets)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = _target_scores(_output(model, model(x, training=False)), t)
    return tape.gradient(score, x).numpy()


def saliency(model: keras.Model, images: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """Saliency maps float32 ``[N, H, W]``: ``|d f / d x|``, the largest over channels."""
    return np.abs(input_gradients(model, images, targets)).max(axis=-1)


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
    patch: int = 16,
    stride: int = 8,
    fill: float | np.ndarray = 0.0,
    batch_size: int = 64,
) -> np.ndarray:
    """Occlusion maps float32 ``[T, H, W]`` of one ``image`` ``[H, W, C]``, one per class of ``targets``.

    ``probabilities``: normalised images ``[B, H, W, C]`` -> class probabilities ``[B, K]``; ``fill``: the
    value (normalised units, a number or one per channel) the patch is filled with.
    """
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    corners = [(y, x) for y in patch_starts(height, patch, stride) for x in patch_starts(width, patch, stride)]
    targets = np.asarray(targets, np.int64).reshape(-1)
    reference = np.asarray(probabilities(image[None]))[0, targets]
    drops = np.zeros((len(targets), height, width), np.float64)
    covered = np.zeros((height, width), np.float64)
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        batch = np.repeat(image[None], len(chunk), axis=0)
        for occluded, (y, x) in zip(batch, chunk):
            occluded[y : y + patch, x : x + patch] = fill
        scores = np.asarray(probabilities(batch))[:, targets]
        for (y, x), score in zip(chunk, scores):
            drops[:, y : y + patch, x : x + patch] += (reference - score)[:, None, None]
            covered[y : y + patch, x : x + patch] += 1
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
