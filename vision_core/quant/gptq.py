"""GPTQ: round a float model's int8 weights so that each layer's output, not each weight, stays close.

Rounding every weight to its nearest int8 step is what the TFLite converter does; a layer whose
outputs are images (super-resolution's last convolution writes pixels) loses more to it than to
any activation. GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers", 2023, after Optimal Brain Quantization) rounds a layer's weights one
input row at a time and moves the rows not yet rounded to compensate for the error, using
``H = X^T X`` of the layer's inputs ``X`` on calibration images (im2col rows of a convolution).
Layers are processed in order, each on the inputs the already rounded layers before it produce.

The grid is the converter's own: symmetric, per output channel, step ``max|w| / 127``. Each
channel's largest weight is set to exactly +-127 steps, so the converter finds the same step and
the same integers. A scale per output channel survives batch-norm folding (the converter scales
every output channel of the kernel), so kernels followed by a batch norm are rounded before it.

:func:`gptq_rounded` returns a copy of the model with ``Conv2D`` (one group) and ``Dense`` kernels
on their int8 grids; other layers keep their weights.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vision_core.backend import keras
from vision_core.logs import get_logger

log = get_logger()
LEVELS = 127
DAMPING = 0.01  # of the mean diagonal of H, added to it (the GPTQ paper's default)
MAX_ROWS = 65536  # input rows sampled per layer for H


def channel_steps(kernel: np.ndarray) -> np.ndarray:
    """The converter's int8 step of each output channel (last axis) of ``kernel``."""
    flat = np.abs(kernel.reshape(-1, kernel.shape[-1]))
    return np.maximum(flat.max(axis=0), 1e-12) / LEVELS


def gptq_round(weights: np.ndarray, hessian: np.ndarray, damping: float = DAMPING) -> np.ndarray:
    """``weights`` ``[d, out]`` rounded to each output channel's int8 grid, row by row with GPTQ's error
    compensation through ``hessian`` ``[d, d]`` (``X^T X`` of the rows' inputs); float64 out."""
    weights = np.array(weights, np.float64)
    rows = weights.shape[0]
    steps = channel_steps(weights)
    peak_row = np.abs(weights).argmax(axis=0)
    peak_sign = np.sign(weights[peak_row, np.arange(weights.shape[1])])
    hessian = np.array(hessian, np.float64)
    dead = np.diag(hessian) <= 0
    hessian[dead, dead] = 1.0
    weights[dead] = 0.0  # an input that is always zero: its weights do nothing
    hessian += damping * np.mean(np.diag(hessian)) * np.eye(rows)
    inverse = np.linalg.cholesky(np.linalg.inv(hessian)).T  # upper Cholesky factor of H^-1
    rounded = np.zeros_like(weights)
    for i in range(rows):
        q = np.clip(np.round(weights[i] / steps), -LEVELS, LEVELS)
        peaks = peak_row == i
        q[peaks] = peak_sign[peaks] * LEVELS  # keeps every channel's step the converter's
        rounded[i] = q * steps
        error = (weights[i] - rounded[i]) / inverse[i, i]
        weights[i + 1 :] -= np.outer(inverse[i, i + 1 :], error)
    return rounded


def _same_padding(size: int, kernel: int, stride: int, rate: int) -> tuple[int, int]:
    """TensorFlow's SAME padding ``(before, after)`` of one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * rate + 1 - size, 0)
    return total // 2, total - total // 2


def _rows(layer, inputs: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` random rows ``X`` the layer's kernel multiplies: im2col patches of a convolution
    (``(kh, kw, C)`` order, gathered at sampled output positions only), input vectors of a dense."""
    if isinstance(layer, keras.layers.Dense):
        rows = inputs.reshape(-1, inputs.shape[-1])
        return rows[rng.choice(len(rows), count, replace=False)] if len(rows) > count else rows
    (kh, kw), (sh, sw), (rh, rw) = layer.kernel_size, layer.strides, layer.dilation_rate
    batch, height, width, _ = inputs.shape
    if layer.padding == "same":
        pads = (_same_padding(height, kh, sh, rh), _same_padding(width, kw, sw, rw))
        inputs = np.pad(inputs, ((0, 0), *pads, (0, 0)))
    out_h = (inputs.shape[1] - (kh - 1) * rh - 1) // sh + 1
    out_w = (inputs.shape[2] - (kw - 1) * rw - 1) // sw + 1
    total = batch * out_h * out_w
    picked = rng.choice(total, count, replace=False) if total > count else np.arange(total)
    n, rest = np.divmod(picked, out_h * out_w)
    y, x = np.divmod(rest, out_w)
    taps = [inputs[n, y * sh + dy * rh, x * sw + dx * rw] for dy in range(kh) for dx in range(kw)]
    return np.concatenate(taps, axis=-1)


def _eligible(layer) -> bool:
    if isinstance(layer, keras.layers.Dense):
        return True
    return (
        type(layer) is keras.layers.Conv2D
        and layer.groups == 1
        and layer.data_format == "channels_last"
        and layer.padding in ("same", "valid")
    )


def gptq_rounded(
    model, batches: Iterable[np.ndarray], max_rows: int = MAX_ROWS, seed: int = 0, progress: bool = True
) -> tuple[keras.Model, dict[str, dict[str, float]]]:
    """A copy of ``model`` with its ``Conv2D`` and ``Dense`` kernels GPTQ-rounded on ``batches`` (model inputs).

    Returns ``(copy, {layer: {"nearest": e, "gptq": e}})`` where ``e`` is the layer's mean squared output
    error on the sampled rows ``trace((W - Q)^T H (W - Q)) / rows`` of nearest rounding and of GPTQ.
    """
    from tqdm import tqdm

    batches = [np.asarray(b, np.float32) for b in batches]
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    rng = np.random.default_rng(seed)
    layers = [layer for layer in copy.layers if _eligible(layer)]
    report = {}
    for layer in tqdm(layers, desc="GPTQ", unit="layer", disable=not progress):
        feed = keras.Model(copy.inputs, layer.input)
        kernel = np.asarray(layer.kernel)
        depth = int(np.prod(kernel.shape[:-1]))
        hessian, count = np.zeros((depth, depth)), 0
        per_batch = max(1, max_rows // len(batches))
        for batch in batches:
            rows = _rows(layer, np.asarray(feed(batch, training=False)), per_batch, rng).astype(np.float64)
            hessian += rows.T @ rows
            count += len(rows)
        hessian /= max(count, 1)
        weights = kernel.reshape(depth, -1).astype(np.float64)
        rounded = gptq_round(weights, hessian)
        nearest = np.clip(np.round(weights / channel_steps(weights)), -LEVELS, LEVELS) * channel_steps(weights)
        report[layer.name] = {
            "nearest": float(np.einsum("io,ij,jo->", weights - nearest, hessian, weights - nearest)),
            "gptq": float(np.einsum("io,ij,jo->", weights - rounded, hessian, weights - rounded)),
        }
        layer.kernel.assign(rounded.reshape(kernel.shape).astype(np.float32))
    return copy, report
