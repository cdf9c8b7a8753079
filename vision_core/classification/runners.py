"""Every form of a classifier behind one call: ``runner(images) -> scores``.

A :class:`ClassifierRunner` takes normalised images, float32 ``[N, H, W, C]`` =
``(pixels - mean) / std`` as :mod:`vision_core.data.classification.pipeline` makes them, and
returns class scores, float32 ``[N, K]`` (logits or probabilities, whichever the model ends in).
The scores are the only output, else the output named ``probabilities`` or ``logits``
(:data:`SCORE_OUTPUTS`, in that order of preference), read by name:

* :class:`KerasClassifierRunner` — a Keras model (object, or ``.keras`` loaded with ``safe_mode``),
  run with batched ``predict``.
* :class:`TFLiteClassifierRunner` — a ``.tflite`` file run by :class:`tflite.runtime.TFLiteModel`
  (one image at a time when the file has batch 1). Float and int8 inputs get the normalised
  images, quantized with the input's own parameters. A uint8 input is fed the pixels
  themselves, ``round(image * std + mean)``, as MediaPipe and ``tflite/predict.py`` feed it (its
  input quantization is the normalisation, to half a step); ``mean`` / ``std`` come from the
  arguments, else the file's metadata, else the input's quantization is applied to the
  normalised values. The metadata's labels become ``class_names``.
* :class:`ONNXClassifierRunner` — an ``.onnx`` file run by onnxruntime
  (:class:`vision_core.export.onnx_export.ONNXModel`), fed the normalised images. An ONNX file
  converted from an int8 TFLite quantizes them in its first ``QuantizeLinear`` (round half to
  even), which can put an input one step from the pixel the TFLite runner feeds.

:func:`load_classifier_runner` picks the form from the object or a path's suffix;
:func:`scores_on` runs a runner over arrays or a ``tf.data`` pipeline.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from tflite.metadata import model_info
from tflite.model_file import load_model
from tflite.runtime import TFLiteModel
from vision_core.backend import keras, tf
from vision_core.export.forms import model_form
from vision_core.export.onnx_export import ONNXModel
from vision_core.quant.convert import output_dict

SCORE_OUTPUTS = ("probabilities", "logits")


def class_scores(
    outputs: dict[str, np.ndarray], source: str, names: Sequence[str] = SCORE_OUTPUTS, ndim: int = 2
) -> np.ndarray:
    """The class-score output among ``outputs`` (the only one, else the first of ``names`` present) as float32
    of ``ndim`` dimensions, classes last ([N, K]; a segmenter's [N, H, W, K])."""
    if len(outputs) == 1:
        scores = next(iter(outputs.values()))
    else:
        name = next((n for n in names if n in outputs), None)
        if name is None:
            raise ValueError(
                f"{source}: cannot tell the class scores among the outputs {sorted(outputs)}; "
                f"name one of them {' or '.join(names)}"
            )
        scores = outputs[name]
    scores = np.asarray(scores, np.float32)
    if scores.ndim != ndim:
        shape = "[N, classes]" if ndim == 2 else f"{ndim} dimensions, classes last"
        raise ValueError(f"{source}: class scores must be {shape}, got shape {scores.shape}")
    return scores


class ClassifierRunner(ABC):
    """``runner(images float32 [N, H, W, C], normalised) -> scores float32 [N, K]``.

    Attributes:
        source: the model's name or file, named in errors.
        input_size: the model input ``(height, width)``, or None when it takes any size.
        class_names: the class names the model carries (TFLite metadata), else None.

    Class attributes (a subclass for another task's scores changes them): ``score_outputs``, the output
    names read in that order when the model has several; ``score_role``, the metadata role naming the
    score output of a TFLite file; ``score_ndim``, the dimensions of the scores.
    """

    score_outputs: tuple[str, ...] = SCORE_OUTPUTS
    score_role: str = "probabilities"
    score_ndim: int = 2

    def __init__(self, source: str, input_size: tuple[int, int] | None, class_names: Sequence[str] | None = None):
        self.source = source
        self.input_size = input_size
        self.class_names = tuple(class_names) if class_names else None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.ndim != 4:
            raise ValueError(f"{self.source}: expected images [N, H, W, C], got shape {images.shape}")
        if self.input_size is not None and images.shape[1:3] != self.input_size:
            raise ValueError(
                f"{self.source}: takes {self.input_size[0]}x{self.input_size[1]} images, "
                f"got {images.shape[1]}x{images.shape[2]}"
            )
        scores = self.run(images)
        if len(scores) != len(images):
            raise ValueError(f"{self.source}: {len(scores)} score rows for {len(images)} images")
        return scores

    @abstractmethod
    def run(self, images: np.ndarray) -> np.ndarray:
        """Normalised float32 images [N, H, W, C] -> class scores float32 [N, K]."""


def _fixed_size(shape) -> tuple[int, int] | None:
    height, width = (int(d) if d is not None and int(d) > 0 else None for d in tuple(shape)[1:3])
    return (height, width) if height and width else None


class KerasClassifierRunner(ClassifierRunner):
    """A Keras classifier (model object, or a ``.keras`` path loaded with ``safe_mode=True``).

    ``custom_objects``: the custom layers a ``.keras`` file needs, when not registered by import.
    """

    def __init__(self, model, batch_size: int = 32, custom_objects: dict | None = None):
        if isinstance(model, (str, os.PathLike)):
            model = keras.saving.load_model(os.fspath(model), safe_mode=True, custom_objects=custom_objects)
        self.model = model
        self.batch_size = batch_size
        super().__init__(model.name, _fixed_size(model.inputs[0].shape))

    def run(self, images: np.ndarray) -> np.ndarray:
        outputs = self.model.predict(images, batch_size=self.batch_size, verbose=0)
        outputs = {k: np.asarray(v) for k, v in output_dict(self.model, outputs).items()}
        return class_scores(outputs, self.source, self.score_outputs, self.score_ndim)


class TFLiteClassifierRunner(ClassifierRunner):
    """A ``.tflite`` classifier (path or flatbuffer bytes); inputs as the module docstring says."""

    def __init__(
        self,
        model: bytes | str | os.PathLike,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        num_threads: int | None = None,
    ):
        data, source = load_model(model)
        info = model_info(data)
        self.model = TFLiteModel(data, num_threads=num_threads)
        self.score_output = info.outputs.get(self.score_role) if info is not None else None
        if (mean is None) != (std is None):
            raise ValueError(f"{source}: pass both mean and std, or neither (then the metadata's are used)")
        if mean is None and info is not None:
            mean, std = info.mean, info.std
        self.mean = None if mean is None else np.asarray(mean, np.float32)
        self.std = None if std is None else np.asarray(std, np.float32)
        super().__init__(source, _fixed_size(self.model.input_shape), info.labels if info is not None else None)

    def run(self, images: np.ndarray) -> np.ndarray:
        if self.model.input_dtype == np.uint8 and self.mean is not None:
            pixels = np.clip(np.round(images * self.std + self.mean), 0, 255)
            # The float each pixel stands for: TFLiteModel quantizes it back to exactly that pixel.
            scale, zero_point = self.model.inputs[self.model.input_name]["quantization"]
            images = (pixels - zero_point) * np.float32(scale)
        outputs = self.model(images)
        if self.score_output in outputs:
            outputs = {self.score_output: outputs[self.score_output]}
        return class_scores(outputs, self.source, self.score_outputs, self.score_ndim)


class ONNXClassifierRunner(ClassifierRunner):
    """An ``.onnx`` classifier with one image input, fed the normalised images."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        self.model = ONNXModel(path, num_threads=num_threads)
        if len(self.model.inputs) != 1:
            raise ValueError(f"{path}: expected one image input, got {sorted(self.model.inputs)}")
        shape = next(iter(self.model.inputs.values())).shape
        super().__init__(os.fspath(path), _fixed_size([d if isinstance(d, int) else None for d in shape]))

    def run(self, images: np.ndarray) -> np.ndarray:
        return class_scores(self.model(images), self.source, self.score_outputs, self.score_ndim)


def load_classifier_runner(
    model,
    *,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    num_threads: int | None = None,
    batch_size: int = 32,
    custom_objects: dict | None = None,
) -> ClassifierRunner:
    """A runner for ``model``: a :class:`ClassifierRunner` (returned as is), a Keras model, TFLite
    flatbuffer bytes, or a path ending in ``.keras``, ``.tflite`` or ``.onnx``.

    ``mean`` / ``std`` (pixel units) serve uint8 TFLite inputs; ``num_threads`` applies to TFLite
    and ONNX, ``batch_size`` and ``custom_objects`` to Keras. Raises ``ValueError`` naming the file
    for another suffix, ``FileNotFoundError`` for a missing file.
    """
    if isinstance(model, ClassifierRunner):
        return model
    form, source = model_form(model, "classifier")
    if form == "keras":
        return KerasClassifierRunner(source, batch_size, custom_objects)
    if form == "tflite":
        return TFLiteClassifierRunner(source, mean, std, num_threads)
    return ONNXClassifierRunner(source, num_threads)


def scores_on(runner: ClassifierRunner, data, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """``(scores float32 [N, K], labels int [N] or None)`` of ``runner`` on ``data``.

    ``data``: images float32 [N, H, W, C] (no labels), a pair ``(images, labels)``, or a
    ``tf.data.Dataset`` of ``(images, labels)`` batches (e.g. ``make_classification_dataset``;
    its labels are those of the images it yielded, so skipped files stay aligned).
    """
    if isinstance(data, tf.data.Dataset):
        scores, labels = [], []
        for images, batch_labels in data:
            scores.append(runner(images.numpy()))
            labels.append(batch_labels.numpy())
        if not scores:
            raise ValueError("the dataset yielded no images")
        return np.concatenate(scores), np.concatenate(labels)
    images, labels = data if isinstance(data, tuple) else (data, None)
    images = np.asarray(images, np.float32)
    if not len(images):
        raise ValueError("no images to score")
    scores = np.concatenate([runner(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    return scores, None if labels is None else np.asarray(labels)
