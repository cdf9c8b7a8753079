"""Run a ``.tflite`` model by signature: float in, float out, whatever its integer types.

Inputs are quantized and outputs dequantized with the tensors' own parameters, and
outputs are returned by signature name (never by ``get_output_details()`` order).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

SIGNATURE = "serving_default"


class TFLiteModel:
    """A loaded ``.tflite`` file (path or flatbuffer bytes) with one signature."""

    def __init__(
        self, model: bytes | str | os.PathLike, num_threads: int | None = None, signature: str = SIGNATURE
    ) -> None:
        kwargs = {"num_threads": num_threads} if num_threads else {}
        if isinstance(model, (bytes, bytearray)):
            self.interpreter = Interpreter(model_content=bytes(model), **kwargs)
        else:
            self.interpreter = Interpreter(model_path=os.fspath(model), **kwargs)
        signatures = self.interpreter.get_signature_list()
        if signature not in signatures:
            raise ValueError(f"model has no signature {signature!r}; it has {sorted(signatures)}")
        self.runner = self.interpreter.get_signature_runner(signature)
        self.inputs: dict[str, dict[str, Any]] = self.runner.get_input_details()
        self.outputs: dict[str, dict[str, Any]] = self.runner.get_output_details()

    @property
    def input_name(self) -> str:
        return next(iter(self.inputs))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.inputs[self.input_name]["shape"])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.inputs[self.input_name]["dtype"])

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        detail = self.inputs[self.input_name]
        return _quantize(np.asarray(x, np.float32), detail)

    def run_raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run on an input already in the model's input dtype; outputs as stored."""
        return self.runner(**{self.input_name: x})

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run on float input ``x`` (batch 1 or a batch run one image at a time); float outputs."""
        x = np.asarray(x, np.float32)
        if x.shape[0] != self.input_shape[0]:
            results = [self(x[i : i + 1]) for i in range(x.shape[0])]
            return {k: np.concatenate([r[k] for r in results]) for k in results[0]}
        raw = self.run_raw(self.quantize_input(x))
        return {name: _dequantize(value, self.outputs[name]) for name, value in raw.items()}


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind == "f":
        return np.asarray(x, np.float32)
    scale, zero_point = detail["quantization"]
    return (np.asarray(x, np.float32) - zero_point) * scale
