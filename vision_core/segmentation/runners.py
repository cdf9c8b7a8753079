"""Every form of a segmenter behind one call: ``runner(images) -> scores``.

Images are normalised float32 ``[N, S, S, 3]`` (``(pixels - mean) / std``); scores float32
``[N, S, S, K]``: the only output, else the one named ``masks`` (probabilities, what the exports
carry) or ``logits``. The runners are the classifier's (:mod:`vision_core.classification.runners`:
Keras with ``safe_mode``, TFLite fed pixels through a uint8 input's quantization, ONNX) reading
scores of rank 4 and the TFLite metadata's ``masks`` role.
"""

from __future__ import annotations

from collections.abc import Sequence

from vision_core.classification.runners import (
    ClassifierRunner,
    KerasClassifierRunner,
    ONNXClassifierRunner,
    TFLiteClassifierRunner,
)
from vision_core.export.forms import model_form

SEGMENTER_OUTPUTS = ("masks", "logits")


class _SegmenterScores:
    score_outputs = SEGMENTER_OUTPUTS
    score_role = "masks"
    score_ndim = 4


class KerasSegmenterRunner(_SegmenterScores, KerasClassifierRunner):
    """A Keras segmenter (model object, or ``.keras`` path loaded with ``safe_mode``)."""


class TFLiteSegmenterRunner(_SegmenterScores, TFLiteClassifierRunner):
    """A ``.tflite`` segmenter; a uint8 input is fed ``round(image * std + mean)``."""


class ONNXSegmenterRunner(_SegmenterScores, ONNXClassifierRunner):
    """An ``.onnx`` segmenter with one image input."""


def load_segmenter_runner(
    model,
    *,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    num_threads: int | None = None,
    batch_size: int = 8,
) -> ClassifierRunner:
    """A runner for ``model``: a runner (returned as is), a Keras model, TFLite bytes, or a ``.keras``,
    ``.tflite`` or ``.onnx`` path (``ValueError`` naming the file for another suffix)."""
    if isinstance(model, ClassifierRunner):
        return model
    form, source = model_form(model, "segmenter")
    if form == "keras":
        return KerasSegmenterRunner(source, batch_size)
    if form == "tflite":
        return TFLiteSegmenterRunner(source, mean, std, num_threads)
    return ONNXSegmenterRunner(source, num_threads)
