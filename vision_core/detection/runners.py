"""Every form of a detector behind one call: ``runner(image) -> Detections``.

A :class:`DetectorRunner` takes an RGB uint8 image ``[H, W, 3]`` and returns
:class:`~vision_core.detection.detector_io.Detections`: boxes float32 ``[N, 4]`` **xyxy
absolute pixels of the original image**, classes int32 ``[N]`` (0-based, no background),
scores float32 ``[N]``, best first. All forms share :class:`DetectorInput` (the resize,
``"stretch"`` by default) and its mapping of the post-process outputs back to the image;
they differ only in how the resized uint8 pixels become the model's input:

* :class:`KerasRunner` — a Keras model ending in ``DetectionPostProcess``
  (``export_tail.with_postprocess``): float input ``normalize(pixels)`` in [-1, 1].
* :class:`TFLiteRunner` — a ``.tflite`` file run by the edge kit's :class:`tflite.runtime.TFLiteModel`,
  outputs read by signature name (through the metadata's output roles when the file has
  the suite's metadata). Float and int8 inputs get ``normalize(pixels)``, quantized with
  the input's own parameters; uint8 inputs get the pixels unchanged, since their input
  quantization is the normalisation (as MediaPipe and ``tflite/predict.py`` feed them).
* :class:`ONNXRunner` — an ``.onnx`` file converted from the SavedModel whose
  ``serving_default`` returns the same four outputs, run by onnxruntime
  (:class:`vision_core.export.onnx_export.ONNXModel`): float input ``normalize(pixels)``.

:func:`load_runner` picks the form from a path's suffix or the object passed.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np

from tflite.metadata import MetadataError, read_metadata
from tflite.runtime import TFLiteModel
from vision_core.backend import keras
from vision_core.detection.detector_io import Detections, DetectorInput, normalize
from vision_core.detection.export_tail import DetectionPostProcess
from vision_core.detection.nms import OUTPUT_NAMES
from vision_core.export.forms import model_form
from vision_core.export.onnx_export import ONNXModel


class DetectorRunner(ABC):
    """``runner(image uint8 [H, W, 3] RGB) -> Detections`` (xyxy pixels of that image).

    Args:
        input_size: the model input (height, width).
        resize_mode: ``"stretch"`` (default, as MediaPipe) or ``"letterbox"``.
        score_threshold: detections scoring below it are dropped (the model's own
            post-process threshold applies first); 0 keeps all, as evaluation wants.
        class_names: names of the class ids when the model carries them (TFLite metadata), else None.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        resize_mode: str = "stretch",
        score_threshold: float = 0.0,
        class_names: tuple[str, ...] | None = None,
    ):
        self.input = DetectorInput(input_size, resize_mode)
        self.score_threshold = score_threshold
        self.class_names = tuple(class_names) if class_names else None

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input.input_size

    def __call__(self, image: np.ndarray) -> Detections:
        outputs = self.run(self.input.pixels(image))
        return self.input.detections(outputs, image.shape[:2], self.score_threshold)

    @abstractmethod
    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Resized uint8 pixels [1, h, w, 3] -> the four post-process outputs by name (numpy)."""


def _input_size(shape, source) -> tuple[int, int]:
    if len(shape) != 4 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape[1:3]):
        raise ValueError(f"{source}: expected one image input [1, H, W, 3] of fixed size, got {list(shape)}")
    return int(shape[1]), int(shape[2])


def _four_outputs(outputs: dict, source) -> dict[str, np.ndarray]:
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    if missing:
        raise ValueError(
            f"{source}: outputs {sorted(outputs)} lack {missing}; a detector must end in the "
            "post-process (export_tail.with_postprocess)"
        )
    return {name: np.asarray(outputs[name]) for name in OUTPUT_NAMES}


class KerasRunner(DetectorRunner):
    """A Keras model (object or ``.keras`` path, loaded in safe mode) with the four post-process outputs."""

    def __init__(self, model, resize_mode: str = "stretch", score_threshold: float = 0.0):
        if isinstance(model, (str, os.PathLike)):
            model = keras.saving.load_model(
                os.fspath(model), safe_mode=True, custom_objects={"DetectionPostProcess": DetectionPostProcess}
            )
        self.model = model
        super().__init__(_input_size(tuple(model.inputs[0].shape), model.name), resize_mode, score_threshold)

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        # predict_on_batch traces the model once; a plain call would retrace the post-process every image
        return _four_outputs(self.model.predict_on_batch(normalize(pixels)), self.model.name)


class TFLiteRunner(DetectorRunner):
    """A ``.tflite`` detector (path or flatbuffer bytes) ending in ``TFLite_Detection_PostProcess``.

    Input uint8, int8 or float32 (see the module docstring). Class names come from the
    suite's metadata when the file has it.
    """

    def __init__(
        self,
        model: bytes | str | os.PathLike,
        resize_mode: str = "stretch",
        score_threshold: float = 0.0,
        num_threads: int | None = None,
    ):
        self.model = TFLiteModel(model, num_threads=num_threads)
        self.source = "model bytes" if isinstance(model, (bytes, bytearray)) else os.fspath(model)
        try:
            info = read_metadata(model)
            self.output_names, labels = info.outputs, info.labels
        except MetadataError:
            self.output_names, labels = {name: name for name in OUTPUT_NAMES}, None
        super().__init__(_input_size(self.model.input_shape, self.source), resize_mode, score_threshold, labels)

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        if self.model.input_dtype == np.uint8:
            # The float each pixel stands for: TFLiteModel quantizes it back to exactly that pixel.
            scale, zero_point = self.model.inputs[self.model.input_name]["quantization"]
            model_input = (pixels.astype(np.float32) - zero_point) * scale
        else:
            model_input = normalize(pixels)
        outputs = self.model(model_input)
        return _four_outputs(
            {role: outputs[name] for role, name in self.output_names.items() if name in outputs}, self.source
        )


class ONNXRunner(DetectorRunner):
    """An ``.onnx`` detector taking the normalised float image, outputs by name (any order)."""

    def __init__(
        self,
        path: str | os.PathLike,
        resize_mode: str = "stretch",
        score_threshold: float = 0.0,
        num_threads: int | None = None,
    ):
        self.model = ONNXModel(path, num_threads=num_threads)
        self.source = os.fspath(path)
        if len(self.model.inputs) != 1:
            raise ValueError(f"{path}: expected one image input, got {sorted(self.model.inputs)}")
        shape = next(iter(self.model.inputs.values())).shape
        super().__init__(_input_size([1, *shape[1:]], path), resize_mode, score_threshold)

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        return _four_outputs(self.model(normalize(pixels)), self.source)


def load_runner(
    model, *, resize_mode: str = "stretch", score_threshold: float = 0.0, num_threads: int | None = None
) -> DetectorRunner:
    """A runner for ``model``: a :class:`DetectorRunner` (returned as is), a Keras model, TFLite
    flatbuffer bytes, or a path ending in ``.keras``, ``.tflite`` or ``.onnx``.

    ``resize_mode`` and ``score_threshold``: see :class:`DetectorRunner`; ``num_threads`` applies
    to TFLite and ONNX. Raises ``ValueError`` for another suffix, ``FileNotFoundError`` for a missing file.
    """
    if isinstance(model, DetectorRunner):
        return model
    form, source = model_form(model, "detector")
    if form == "keras":
        return KerasRunner(source, resize_mode, score_threshold)
    if form == "tflite":
        return TFLiteRunner(source, resize_mode, score_threshold, num_threads)
    return ONNXRunner(source, resize_mode, score_threshold, num_threads)
