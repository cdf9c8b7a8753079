"""Keras model -> ``.tflite`` file with metadata, loadable by the edge kit and MediaPipe Tasks.

Conversion is :func:`vision_core.quant.convert.convert` (int8 graphs are audited
there); the metadata is :func:`tflite.metadata.add_metadata`; the file is written
atomically. Two things make an export work in MediaPipe Tasks with no extra code:

* int8 image models take **uint8** input by default, and for uint8 inputs MediaPipe
  ignores the metadata's mean/std: the input quantization itself normalises. The
  calibration data get two extra pixels at the normalised values of 0 and 255, so the
  calibrated input range, hence the uint8 quantization, is exactly the pixel range:
  uint8 ``p`` stands for ``(p - mean) / std`` (to half a step, as the zero point is an
  integer). This needs one mean/std for all channels, and is checked after conversion.
* classifiers export **probabilities** (MediaPipe applies no activation): a model ending
  in logits gets a ``Softmax`` layer named ``probabilities``; one already ending in a softmax,
  a sigmoid (a multi-label classifier's independent class probabilities) or a layer named
  ``probabilities`` (an ensemble's mean of its members' probabilities) is kept as it is.

Two rewrites of the int8 graph make it faster in XNNPACK: convolutions with few input channels
(an image model's stride-1 first layer) run on 2x2 pixel blocks
(:func:`tflite.space_to_depth.space_to_depth_convs`, bit-identical), and clip ops before the
uint8 output go when the output's own saturation clips the same
(:func:`tflite.saturating_clips.drop_saturated_clips`, within one output step).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from tflite.metadata import PIXEL_RANGE, ModelInfo, add_metadata
from tflite.runtime import TFLiteModel
from tflite.saturating_clips import drop_saturated_clips
from tflite.space_to_depth import space_to_depth_convs
from vision_core.backend import keras
from vision_core.quant.convert import convert
from vision_core.storage.atomic import write_atomic

DEFAULT_IO_DTYPE = {"int8": "uint8", "int16x8": "float32"}


def export_tflite(
    model,
    path: str | os.PathLike,
    mode: str = "int8",
    representative_data: Iterable | Callable | None = None,
    *,
    info: ModelInfo,
    io_dtype: str | None = None,
    **convert_options,
) -> Path:
    """Convert ``model`` in ``mode``, add the metadata of ``info`` and write it to ``path``.

    ``mode``: ``float32``, ``float16``, ``int8`` or ``int16x8``. ``representative_data``:
    float32 batches ``(N, H, W, C)`` normalised as ``info`` says (int8 and int16x8 need
    them). ``io_dtype``: input/output type of integer models, default ``uint8`` for int8
    and ``float32`` for int16x8. ``convert_options`` go to ``convert`` (e.g.
    ``allow_custom_ops`` for the detection post-process op). Returns the written path.
    """
    io_dtype = io_dtype or DEFAULT_IO_DTYPE.get(mode)
    if info.task == "classification" and not ends_in_probabilities(model):
        model = with_softmax(model)
    uint8_input = mode == "int8" and io_dtype == "uint8"
    if uint8_input:
        representative_data = _with_pixel_extremes(representative_data, info)
    flatbuffer = convert(model, mode, representative_data, io_dtype=io_dtype, **convert_options)
    if uint8_input:
        check_uint8_normalisation(flatbuffer, info, source=f"{model.name} ({mode})")
    if mode == "int8":
        flatbuffer, _ = space_to_depth_convs(flatbuffer)
        flatbuffer, _ = drop_saturated_clips(flatbuffer)
    return write_atomic(path, add_metadata(flatbuffer, info))


def _last_activation(model) -> tuple[object, str]:
    """``(last layer, name of its activation function or "")``, seen through TF-MOT's wrappers: a QAT layer is
    ``QuantizeWrapperV2(layer)`` and its activation a ``QuantizeAwareActivation`` holding the original function."""
    last = getattr(model.layers[-1], "layer", model.layers[-1])
    activation = getattr(last, "activation", None)
    activation = getattr(activation, "activation", activation)
    return last, getattr(activation, "__name__", "")


def ends_in_softmax(model) -> bool:
    """Whether the model's last layer is a softmax (a ``Softmax`` layer or a softmax activation)."""
    last, activation = _last_activation(model)
    return isinstance(last, keras.layers.Softmax) or activation == "softmax"


def ends_in_sigmoid(model) -> bool:
    """Whether the model's last layer has a sigmoid activation (an ``Activation`` layer or a layer's own)."""
    return _last_activation(model)[1] == "sigmoid"


def ends_in_probabilities(model) -> bool:
    """Whether a classifier's output already holds probabilities: it ends in a softmax, a sigmoid, or a layer
    named ``probabilities`` (seen through TF-MOT's wrappers)."""
    return ends_in_softmax(model) or ends_in_sigmoid(model) or _last_activation(model)[0].name == "probabilities"


def with_softmax(model):
    """``model`` followed by a ``Softmax`` layer named ``probabilities`` (same name, shared weights)."""
    probabilities = keras.layers.Softmax(name="probabilities")(model.outputs[0])
    return keras.Model(model.inputs, probabilities, name=model.name)


def check_uint8_normalisation(flatbuffer: bytes, info: ModelInfo, source: str = "model") -> None:
    """Raise ``ValueError`` unless the uint8 input's quantization maps pixel ``p`` to ``(p - mean) / std``."""
    converted = TFLiteModel(flatbuffer)
    scale, zero_point = converted.inputs[converted.input_name]["quantization"]
    mean, std = info.mean[0], info.std[0]
    if abs(scale * std - 1.0) > 1e-3 or abs(zero_point - mean) > 0.5 + 1e-3:
        raise ValueError(
            f"{source}: uint8 input quantization (scale {scale:.6g}, zero point {zero_point}) does not "
            f"normalise pixels as (p - {mean}) / {std} (expected scale {1 / std:.6g}, zero point ~{mean}); "
            "the calibration data are probably not normalised that way"
        )


def _with_pixel_extremes(data: Iterable | Callable | None, info: ModelInfo) -> Callable | None:
    """Calibration batches whose first image also holds the normalised values of pixels 0 and 255."""
    if data is None:
        return None
    if len(set(info.mean)) > 1 or len(set(info.std)) > 1:
        raise ValueError(
            f"{info.name}: uint8 input needs one mean/std for all channels (got mean={info.mean} "
            f"std={info.std}); export with io_dtype='float32' or normalise inside the model"
        )
    low, high = ((p - info.mean[0]) / info.std[0] for p in PIXEL_RANGE)

    def batches():
        source = data() if callable(data) else data
        for i, batch in enumerate(source):
            batch = np.array(batch, dtype=np.float32)
            if i == 0:
                batch[0, 0, 0, :], batch[0, 0, 1, :] = low, high
            yield batch

    return batches
