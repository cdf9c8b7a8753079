"""A detector ending in ``TFLite_Detection_PostProcess``: the Keras layer, its conversion, its audit.

:func:`with_postprocess` appends :class:`DetectionPostProcess` to a raw detector (outputs
``box_encodings [1, A, 4]`` and ``class_scores [1, A, C]``); the result is an ordinary
Keras model whose outputs are the op's four, by name: ``boxes [1, D, 4]`` as ``(ymin,
xmin, ymax, xmax)`` **normalised** to the input, ``classes [1, D]``, ``scores [1, D]``,
``num_detections [1]`` (all float32). In Keras it computes the op's result in TF; after
conversion with ``allow_custom_ops`` the op itself runs.

Two things :func:`vision_core.quant.convert.convert` cannot do yet, done here by
:func:`convert_detector`:

* integer input with **float32 outputs**: the op's outputs are float (``convert``'s one
  ``io_dtype`` would append QUANTIZE ops that squeeze classes and counts into int8);
* an audit that allows the DEQUANTIZE ops feeding the op (its inputs must be float) as
  well as the op itself (:func:`require_int8_detector`).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import flatbuffers.flexbuffers as flexbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tflite.audit import FloatOpError, OpRecord, audit_ops
from vision_core.backend import keras, tf
from vision_core.detection.nms import POSTPROCESS_OP, PostProcessConfig, tflite_detection_postprocess
from vision_core.quant.convert import INPUT_NAME, write_saved_model

INPUT_DTYPES = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}


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
        return tflite_detection_postprocess(box_encodings, class_scores, self.anchors, self.image_size,
                                            self.config)

    def get_config(self):
        return {**super().get_config(), "anchors": self.anchors.tolist(), "image_size": self.image_size,
                "config": dataclasses.asdict(self.config)}


def with_postprocess(model, anchors, config: PostProcessConfig, encodings: str = "box_encodings",
                     scores: str = "class_scores"):
    """``model`` (one image input, dict outputs ``encodings`` and ``scores``) followed by the post-process.

    ``anchors [A, 4]`` are xyxy pixels of the model's input size. Returns a Keras model
    with the same input and the outputs ``boxes``, ``classes``, ``scores``, ``num_detections``.
    """
    height, width, channels = model.inputs[0].shape[1:]
    image = keras.Input((height, width, channels), name=INPUT_NAME)
    raw = model(image)
    tail = DetectionPostProcess(anchors, (height, width), config, name="postprocess")
    return keras.Model(image, tail(raw[encodings], raw[scores]), name=f"{model.name}_postprocess")


def convert_detector(model, mode: str = "int8", representative_data: Iterable | Callable | None = None, *,
                     input_dtype: str = "uint8", max_calibration_batches: int = 100) -> bytes:
    """Convert a model ending in :class:`DetectionPostProcess` to TFLite bytes; outputs stay float32.

    ``mode``: ``float32`` or ``int8`` (full-integer graph up to the post-process op, which
    the audit allows to be float). ``representative_data`` yields float32 batches ``(N, H,
    W, C)`` of preprocessed inputs (int8 needs them). ``input_dtype`` of an int8 model:
    ``uint8`` (default), ``int8`` or ``float32``. Int8 results are checked by
    :func:`require_int8_detector`.
    """
    if mode not in ("float32", "int8"):
        raise ValueError(f"detector conversion supports float32 and int8, not {mode!r}")
    if mode == "int8" and representative_data is None:
        raise ValueError("int8 conversion needs representative data for calibration")
    with tempfile.TemporaryDirectory(prefix="detector_export_") as tmp:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(write_saved_model(model, Path(tmp) / "sm")))
        converter.allow_custom_ops = True
        if mode == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = _calibration(representative_data, max_calibration_batches)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = INPUT_DTYPES[input_dtype]
            converter.inference_output_type = tf.float32
        flatbuffer = converter.convert()
    if mode == "int8" and input_dtype != "float32":
        require_int8_detector(flatbuffer, source=f"{model.name} ({mode})")
    return flatbuffer


def _calibration(data: Iterable | Callable, limit: int):
    def samples():
        source = data() if callable(data) else data
        for i, batch in enumerate(source):
            if i >= limit:
                break
            for image in np.asarray(batch, np.float32):
                yield {INPUT_NAME: image[None]}

    return samples


def require_int8_detector(model: bytes | str, source: str = "detector") -> list[OpRecord]:
    """Audit like :func:`tflite.audit.require_int8`, also allowing the DEQUANTIZE ops whose
    outputs go only into ``TFLite_Detection_PostProcess``. Raises :class:`FloatOpError`."""
    records = audit_ops(model)
    feeding_op = _dequantize_into_postprocess(model)
    bad = [r for r in records if r.is_float and r.op != POSTPROCESS_OP and r.index not in feeding_op]
    if bad:
        listed = "; ".join(f"#{r.index} {r.op} ({'/'.join(r.output_names)})" for r in bad[:20])
        raise FloatOpError(f"{source}: {len(bad)} float op(s) in an int8 detector: {listed}")
    return records


def _dequantize_into_postprocess(model: bytes | str) -> set[int]:
    kwargs = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    interpreter = (Interpreter(model_content=bytes(model), **kwargs) if isinstance(model, (bytes, bytearray))
                   else Interpreter(model_path=str(model), **kwargs))
    ops = interpreter._get_ops_details()
    consumers: dict[int, set[str]] = {}
    for op in ops:
        for tensor in op["inputs"]:
            consumers.setdefault(tensor, set()).add(op["op_name"])
    return {op["index"] for op in ops if op["op_name"] == "DEQUANTIZE"
            and all(consumers.get(t) == {POSTPROCESS_OP} for t in op["outputs"])}


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
