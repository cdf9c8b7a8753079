"""Which form a model comes in, for the runners every task's evaluator uses on every form.

A form is a Keras model (in memory or a ``.keras`` file), a TFLite flatbuffer (bytes or a
``.tflite`` file) or an ``.onnx`` file; a task's ``load_*_runner`` maps each to its runner.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from vision_core.backend import keras

FILE_SUFFIXES = {".keras": "keras", ".tflite": "tflite", ".onnx": "onnx"}
Form = Literal["keras", "tflite", "onnx"]


def model_form(model: Any, kind: str = "model") -> tuple[Form, Any]:
    """``(form, source)`` of a Keras model, TFLite bytes or a model file's path (``source``: the model,
    the bytes or the :class:`~pathlib.Path`).

    ``kind`` names the model in errors (``"detector"``): ``TypeError`` for another object,
    ``ValueError`` naming the file for another suffix, ``FileNotFoundError`` for a missing file.
    """
    if isinstance(model, keras.Model):
        return "keras", model
    if isinstance(model, (bytes, bytearray)):
        return "tflite", model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"cannot run {type(model).__name__}: pass a Keras model, a runner, TFLite bytes or a path")
    path = Path(model)
    if path.suffix not in FILE_SUFFIXES:
        raise ValueError(f"{path}: unknown {kind} format {path.suffix!r}: expected {', '.join(FILE_SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    return FILE_SUFFIXES[path.suffix], path
