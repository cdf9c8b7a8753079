"""ONNX export with tf2onnx, and an onnxruntime runner that returns outputs by name.

Two sources, each the form tf2onnx converts faithfully (tf2onnx 1.17, opset 17):

* a SavedModel signature (float models): matches Keras to float rounding. tf2onnx 1.17
  converts SavedModels only through its command line (``python -m tf2onnx.convert
  --saved-model``); its Python API has no ``from_saved_model``.
* a ``.tflite`` file (int8 models): a QDQ graph that follows the int8 TFLite model.
  tf2onnx keeps TFLite's integer inputs/outputs and its tensor names
  (``serving_default_image:0``, ``StatefulPartitionedCall:2``), so the export wraps
  them: float32 inputs quantized with ``QuantizeLinear`` and float32 outputs from
  ``DequantizeLinear``, using the TFLite tensors' own scale and zero point, all named
  as in the TFLite signature. The ONNX model is then float in, float out, like
  :class:`tflite.runtime.TFLiteModel`, and keeps TFLite's fixed batch size.

tf2onnx runs in a child process, so its imports and logging stay out of this one.
Files are written atomically. tf2onnx orders outputs its own way: read them by name
(:class:`ONNXModel`), never by position.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from tflite.runtime import TFLiteModel
from vision_core.quant.agreement import output_agreement
from vision_core.storage.atomic import write_atomic

DEFAULT_OPSET = 17
_TENSOR_SUFFIX = re.compile(r":\d+$")


def tensor_name(name: str) -> str:
    """A graph tensor name without its TensorFlow output suffix: ``"logits:0"`` -> ``"logits"``."""
    return _TENSOR_SUFFIX.sub("", name)


def _tf2onnx(source_args: list[str], opset: int, timeout: float) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="tf2onnx_") as tmp:
        output = Path(tmp) / "model.onnx"
        command = [
            sys.executable,
            "-m",
            "tf2onnx.convert",
            *source_args,
            "--opset",
            str(opset),
            "--output",
            str(output),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0 or not output.exists():
            raise RuntimeError(
                f"tf2onnx failed (exit {result.returncode}): {' '.join(command)}\n{result.stderr[-4000:]}"
            )
        return onnx.load(str(output))


def _write(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    onnx.checker.check_model(model)
    return write_atomic(path, model.SerializeToString())


def export_onnx_from_saved_model(
    saved_model_dir: str | os.PathLike,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    signature: str = "serving_default",
    timeout: float = 900,
) -> Path:
    """Convert one tensor signature of a SavedModel to ONNX at ``path``; returns the path.

    Inputs and outputs keep the signature's names and shapes (a free batch dimension stays
    free). ``serving_bytes`` cannot be converted: ONNX has no image decoding.
    """
    model = _tf2onnx(["--saved-model", os.fspath(saved_model_dir), "--signature_def", signature], opset, timeout)
    return _write(model, path)


def export_onnx_from_tflite(
    tflite_path: str | os.PathLike, path: str | os.PathLike, opset: int = DEFAULT_OPSET, timeout: float = 900
) -> Path:
    """Convert a ``.tflite`` file to ONNX at ``path`` with float32 I/O named by its signature; returns the path."""
    model = _tf2onnx(["--tflite", os.fspath(tflite_path)], opset, timeout)
    _name_by_signature(model, TFLiteModel(tflite_path))
    return _write(model, path)


def _name_by_signature(model: onnx.ModelProto, tflite: TFLiteModel) -> None:
    """Put float32 I/O named by the TFLite signature around ``model``'s TFLite-named, maybe integer, I/O."""
    graph = model.graph
    tensor_names = {t["index"]: t["name"] for t in tflite.interpreter.get_tensor_details()}
    taken = {name for node in graph.node for name in (*node.input, *node.output)}
    taken |= {t.name for t in graph.initializer} | {v.name for v in (*graph.input, *graph.output)}

    def boundary(key: str, detail: dict, values, is_input: bool) -> onnx.NodeProto:
        inner = tensor_names[detail["index"]]
        value = next((v for v in values if v.name == inner), None)
        if value is None or key in taken:
            raise ValueError(f"cannot name ONNX tensor {inner!r} as {key!r}: tensor missing or name taken")
        shape = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in value.type.tensor_type.shape.dim
        ]
        value.CopyFrom(helper.make_tensor_value_info(key, TensorProto.FLOAT, shape))
        source, target = (key, inner) if is_input else (inner, key)
        dtype = np.dtype(detail["dtype"])
        if dtype.kind == "f":
            return helper.make_node("Identity", [source], [target])
        if dtype not in (np.int8, np.uint8):
            raise ValueError(f"opset-17 QuantizeLinear takes int8 or uint8, TFLite tensor {key!r} is {dtype}")
        scale, zero_point = detail["quantization"]
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(scale, np.float32), f"{key}_scale"),
                numpy_helper.from_array(np.array(zero_point, dtype), f"{key}_zero_point"),
            ]
        )
        op = "QuantizeLinear" if is_input else "DequantizeLinear"
        return helper.make_node(op, [source, f"{key}_scale", f"{key}_zero_point"], [target])

    firsts = [boundary(key, detail, graph.input, True) for key, detail in tflite.inputs.items()]
    lasts = [boundary(key, detail, graph.output, False) for key, detail in tflite.outputs.items()]
    nodes = [*firsts, *graph.node, *lasts]
    del graph.node[:]
    graph.node.extend(nodes)


# onnxruntime input type -> the numpy dtype fed to it.
_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


class ONNXModel:
    """An ONNX file run with onnxruntime on CPU; inputs and outputs by name (``:0`` suffixes dropped)."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {tensor_name(i.name): i for i in self.session.get_inputs()}
        self.output_names = [tensor_name(o.name) for o in self.session.get_outputs()]

    def __call__(self, inputs: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on one array (single-input models) or ``{name: array}``; returns ``{name: array}``.

        Arrays are batched along axis 0; a model with a fixed batch (e.g. from TFLite) is run
        one slice at a time and the outputs are concatenated.
        """
        if not isinstance(inputs, dict):
            if len(self.inputs) != 1:
                raise ValueError(f"model takes {sorted(self.inputs)}: pass a dict")
            inputs = {next(iter(self.inputs)): inputs}
        inputs = {tensor_name(k): v for k, v in inputs.items()}
        if set(inputs) != set(self.inputs):
            raise ValueError(f"inputs {sorted(inputs)} do not match the model's {sorted(self.inputs)}")
        batch = next(iter(inputs.values())).shape[0]
        fixed = self.inputs[next(iter(inputs))].shape[0]
        if isinstance(fixed, int) and fixed != batch:
            parts = [self({k: v[i : i + fixed] for k, v in inputs.items()}) for i in range(0, batch, fixed)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        feed = {self.inputs[k].name: np.asarray(v, _NUMPY_TYPES.get(self.inputs[k].type)) for k, v in inputs.items()}
        return dict(zip(self.output_names, self.session.run(None, feed)))


def check_onnx(
    path: str | os.PathLike,
    reference: dict[str, np.ndarray],
    inputs: np.ndarray | dict[str, np.ndarray],
    *,
    atol: float | None = None,
    min_cosine: float | None = None,
    only: Iterable[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Run the ONNX file on ``inputs`` and compare with ``reference`` outputs, matched by name.

    Returns ``{name: {"max_abs_diff": float, "cosine": float}}`` of every output, or of the outputs
    named in ``only``. Raises ``ValueError`` when the output names or shapes differ, or when a compared
    output is off by more than ``atol`` (max abs) or below ``min_cosine``, naming the output.
    """
    outputs = ONNXModel(path)(inputs)
    reference = {tensor_name(k): np.asarray(v) for k, v in reference.items()}
    if set(reference) != set(outputs):
        raise ValueError(f"{path}: outputs differ: reference {sorted(reference)} vs onnx {sorted(outputs)}")
    if only is not None:
        names = [tensor_name(name) for name in only]
        reference, outputs = {n: reference[n] for n in names}, {n: outputs[n] for n in names}
    shapes = {k: (reference[k].shape, outputs[k].shape) for k in reference if reference[k].shape != outputs[k].shape}
    if shapes:
        raise ValueError(f"{path}: output shapes differ (reference, onnx): {shapes}")
    cosines = output_agreement(reference, outputs)
    report = {
        name: {
            "max_abs_diff": float(np.max(np.abs(outputs[name].astype(np.float64) - reference[name]))),
            "cosine": cosines[name],
        }
        for name in sorted(reference)
    }
    too_far = [name for name, r in report.items() if atol is not None and r["max_abs_diff"] > atol]
    too_skewed = [name for name, r in report.items() if min_cosine is not None and r["cosine"] < min_cosine]
    failures = [f"{name}: {report[name]}" for name in sorted(set(too_far) | set(too_skewed))]
    if failures:
        raise ValueError(
            f"{path} differs from the reference (atol={atol}, min_cosine={min_cosine}):\n" + "\n".join(failures)
        )
    return report
