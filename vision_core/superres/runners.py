"""Every form of a super-resolution model behind one call: ``runner(image) -> upscaled image``.

A :class:`SRRunner` takes one low-resolution image, float32 ``[h, w, C]`` in ``pixels / 255`` (C = 1
for a Y model, 3 for RGB; :func:`vision_core.data.superres.pipeline.to_model_pixels`), and returns
float32 ``[h * s, w * s, C]`` in the same units, unclipped:

* :class:`KerasSRRunner` — a Keras model (object, or ``.keras`` loaded with ``safe_mode``); a fully
  convolutional model runs at any size.
* :class:`TFLiteSRRunner` — a ``.tflite`` file (:class:`tflite.runtime.TFLiteModel`): the input tensor is
  resized to the image, so an export of any fixed size runs on every image. A uint8 input of scale
  1/255 is fed the pixels themselves; outputs are dequantized.
* :class:`ONNXSRRunner` — an ``.onnx`` file: an image of the file's fixed input size runs as it is; another
  is covered by overlapping tiles of that size whose outer ``margin`` input pixels are dropped
  (exact when the margin covers the model's receptive field and the image is at least one tile;
  a smaller image is edge-padded, which changes the pixels near its bottom/right border).

:func:`load_sr_runner` picks the form (:func:`vision_core.export.forms.model_form`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np

from tflite.runtime import TFLiteModel
from vision_core.backend import keras
from vision_core.export.forms import model_form
from vision_core.export.onnx_export import ONNXModel
from vision_core.quant.convert import output_dict

TILE_MARGIN = 16  # input pixels dropped at a tile's inner edges: more than any preset's receptive radius


class SRRunner(ABC):
    """``runner(image float32 [h, w, C]) -> float32 [h * scale, w * scale, C]``; ``scale`` is found on first run."""

    def __init__(self, source: str, channels: int | None):
        self.source = source
        self.channels = channels

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image, np.float32)
        if image.ndim != 3:
            raise ValueError(f"{self.source}: expected one image [h, w, C], got shape {image.shape}")
        if self.channels is not None and image.shape[-1] != self.channels:
            raise ValueError(f"{self.source}: takes {self.channels}-channel images, got {image.shape[-1]}")
        output = self.run(image)
        if output.shape[0] % image.shape[0] or output.shape[0] // image.shape[0] != output.shape[1] // image.shape[1]:
            raise ValueError(f"{self.source}: output {output.shape} is not an upscaled {image.shape}")
        return output

    @abstractmethod
    def run(self, image: np.ndarray) -> np.ndarray:
        """float32 ``[h, w, C]`` -> float32 ``[h * s, w * s, C]``."""


def _single(outputs: dict, source: str) -> np.ndarray:
    if len(outputs) != 1:
        raise ValueError(f"{source}: expected one image output, got {sorted(outputs)}")
    return np.asarray(next(iter(outputs.values())), np.float32)[0]


class KerasSRRunner(SRRunner):
    def __init__(self, model):
        if isinstance(model, (str, os.PathLike)):
            model = keras.saving.load_model(os.fspath(model), safe_mode=True)
        self.model = model
        super().__init__(model.name, model.inputs[0].shape[-1])

    def run(self, image: np.ndarray) -> np.ndarray:
        outputs = self.model(image[None], training=False)
        return _single({k: np.asarray(v) for k, v in output_dict(self.model, outputs).items()}, self.source)


class TFLiteSRRunner(SRRunner):
    def __init__(self, model, num_threads: int | None = None):
        self.model = TFLiteModel(model, num_threads=num_threads)
        super().__init__(os.fspath(model) if not isinstance(model, bytes) else "tflite", self.model.input_shape[-1])

    def run(self, image: np.ndarray) -> np.ndarray:
        return _single(self.model(image[None]), self.source)


def tiled(run, image: np.ndarray, tile: tuple[int, int], margin: int = TILE_MARGIN) -> np.ndarray:
    """``run`` (one ``tile``-sized image in, its upscaled image out) over ``image`` of any size (see the module)."""
    height, width = image.shape[:2]
    tile_h, tile_w = tile
    padded = np.pad(image, ((0, max(0, tile_h - height)), (0, max(0, tile_w - width)), (0, 0)), mode="edge")
    step_h, step_w = max(1, tile_h - 2 * margin), max(1, tile_w - 2 * margin)
    output, scale = None, 0
    for top in range(0, height, step_h):
        for left in range(0, width, step_w):
            y0 = min(max(top - margin, 0), padded.shape[0] - tile_h)
            x0 = min(max(left - margin, 0), padded.shape[1] - tile_w)
            result = run(padded[y0 : y0 + tile_h, x0 : x0 + tile_w])
            if output is None:
                scale = result.shape[0] // tile_h
                output = np.zeros((height * scale, width * scale, result.shape[-1]), np.float32)
            bottom, right = min(top + step_h, height), min(left + step_w, width)
            output[top * scale : bottom * scale, left * scale : right * scale] = result[
                (top - y0) * scale : (bottom - y0) * scale, (left - x0) * scale : (right - x0) * scale
            ]
    return output


class ONNXSRRunner(SRRunner):
    def __init__(self, path, num_threads: int | None = None):
        self.model = ONNXModel(path, num_threads=num_threads)
        if len(self.model.inputs) != 1:
            raise ValueError(f"{path}: expected one image input, got {sorted(self.model.inputs)}")
        shape = next(iter(self.model.inputs.values())).shape
        self.size = tuple(d if isinstance(d, int) else None for d in shape[1:3])
        super().__init__(os.fspath(path), shape[3] if isinstance(shape[3], int) else None)

    def _run_one(self, image: np.ndarray) -> np.ndarray:
        return _single(self.model(image[None]), self.source)

    def run(self, image: np.ndarray) -> np.ndarray:
        if None in self.size or tuple(image.shape[:2]) == self.size:
            return self._run_one(image)
        return tiled(self._run_one, image, self.size)


def load_sr_runner(model, num_threads: int | None = None) -> SRRunner:
    """A runner for ``model``: an :class:`SRRunner` (as is), a Keras model, TFLite bytes or a ``.keras`` /
    ``.tflite`` / ``.onnx`` path (``ValueError`` naming another suffix, ``FileNotFoundError`` a missing file)."""
    if isinstance(model, SRRunner):
        return model
    form, source = model_form(model, "super-resolution model")
    if form == "keras":
        return KerasSRRunner(source)
    if form == "tflite":
        return TFLiteSRRunner(source, num_threads)
    return ONNXSRRunner(source, num_threads)
