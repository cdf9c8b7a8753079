"""A detector ending in ``TFLite_Detection_PostProcess``: the Keras layer, its conversion, its audit.

:func:`with_postprocess` appends :class:`DetectionPostProcess` to a raw detector (outputs
``box_encodings [1, A, 4]`` and ``class_scores [1, A, C]``); the result is an ordinary
Keras model whose outputs are the op's four, by name: ``boxes [1, D, 4]`` as ``(ymin,
xmin, ymax, xmax)`` **normalised** to the input, ``classes [1, D]``, ``scores [1, D]``,
``num_detections [1]`` (all float32). In Keras it computes the op's result in TF; after
conversion with ``allow_custom_ops`` the op itself runs.

:func:`convert_detector` converts with integer input and **float32 outputs** (int8 outputs
would squeeze classes and counts); the audit allows the op and the DEQUANTIZE ops feeding
it (its inputs must be float).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import flatbuffers.flexbuffers as flexbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite.audit import OpRecord, require_int8
from vision_core.backend import keras
from vision_core.detection.nms import (
    POSTPROCESS_OP,
    PostProcessConfig,
    tflite_detection_postprocess,
)
from vision_core.quant.convert import INPUT_NAME, convert


class DetectionPostProcess(keras.layers.Layer):
    """``(box_encodings [B, A, 4], class_scores [B, A, C])`` -> the op's outputs (see the module docstring).

    ``anchors [A, 4]``: xyxy pixels of an ``(height, width)`` = ``image_size`` input.
    Encodings are ``(ty, tx, th, tw)`` with ``config.box_scales``; scores are
    probabilities, ``C = num_classes`` or ``num_classes + 1`` with column 0 background.
    The converted op takes batch 1 only; in Keras any batch works.
    """

    def __init__(self, anchors, image_size: tuple[int, int], config: PostProcessConfig | dict, **kwargs):
        super().__init__(**kwargs)
        self.anchors = np.asarray(anchors, np.float32)
        self.image_size = tuple(int(s) for s in image_size)
        if isinstance(config, dict):  # from get_config
            config = PostProcessConfig(**{**config, "box_scales": tuple(config["box_scales"])})
        self.config = config

    def call(self, box_encodings, class_scores):
        return tflite_detection_postprocess(box_encodings, class_scores, self.anchors, self.image_size, self.config)

    def get_config(self):
        return {
            **super().get_config(),
            "anchors": self.anchors.tolist(),
            "image_size": self.image_size,
            "config": dataclasses.asdict(self.config),
        }


def with_postprocess(
    model, anchors, config: PostProcessConfig, encodings: str = "box_encodings", scores: str = "class_scores"
):
    """``model`` (one image input, dict outputs ``encodings`` and ``scores``) followed by the post-process.

    ``anchors [A, 4]`` are xyxy pixels of the model's input size. Returns a Keras model
    with the same input and the outputs ``boxes``, ``classes``, ``scores``, ``num_detections``.
    """
    height, width, channels = model.inputs[0].shape[1:]
    image = keras.Input((height, width, channels), name=INPUT_NAME)
    raw = model(image)
    tail = DetectionPostProcess(anchors, (height, width), config, name="postprocess")
    return keras.Model(image, tail(raw[encodings], raw[scores]), name=f"{model.name}_postprocess")


def convert_detector(
    model,
    mode: str = "int8",
    representative_data: Iterable | Callable | None = None,
    *,
    input_dtype: str = "uint8",
    max_calibration_batches: int = 100,
) -> bytes:
    """Convert a model ending in :class:`DetectionPostProcess` to TFLite bytes; outputs stay float32.

    ``mode``: ``float32`` or ``int8`` (full-integer graph up to the post-process op, which
    the audit allows to be float, with the DEQUANTIZE ops feeding it). ``representative_data``
    yields float32 batches ``(N, H, W, C)`` of preprocessed inputs (int8 needs them).
    ``input_dtype`` of an int8 model: ``uint8`` (default), ``int8`` or ``float32``.
    """
    if mode not in ("float32", "int8"):
        raise ValueError(f"detector conversion supports float32 and int8, not {mode!r}")
    return convert(
        model,
        mode,
        representative_data,
        io_dtype=input_dtype,
        output_dtype="float32",
        max_calibration_batches=max_calibration_batches,
        allow_custom_ops=True,
    )


def require_int8_detector(model: bytes | str, source: str = "detector") -> list[OpRecord]:
    """:func:`tflite.audit.require_int8` for a detector (the post-process op and the
    DEQUANTIZE ops feeding it may be float). Raises :class:`tflite.audit.FloatOpError`."""
    return require_int8(model, source=source)


def postprocess_options(flatbuffer: bytes) -> dict:
    """The options the converter wrote into the model's ``TFLite_Detection_PostProcess`` op
    (e.g. ``{"max_detections": 100, "num_classes": 3, "y_scale": 10.0, ...}``)."""
    model = schema.Model.GetRootAs(flatbuffer, 0)
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            if model.OperatorCodes(op.OpcodeIndex()).CustomCode() == POSTPROCESS_OP.encode():
                return flexbuffers.Loads(op.CustomOptionsAsNumpy().tobytes())
    raise ValueError(f"the model holds no {POSTPROCESS_OP} op")
