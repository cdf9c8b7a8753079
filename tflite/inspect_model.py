"""What a ``.tflite`` file holds: inputs/outputs, op audit, MACs and metadata.

:func:`inspect_model` returns a JSON-ready dict; :func:`format_report` renders it as text.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ai_edge_litert.interpreter import Interpreter

from tflite.audit import audit_ops, float_ops, op_summary
from tflite.macs import count_macs
from tflite.metadata import associated_files, model_info, read_model_metadata
from tflite.model_file import TensorInfo, io_tensors, load_model


def _tensor(tensor: TensorInfo, details: dict) -> dict:
    scale, zero_point = details["quantization"]
    return {
        "name": tensor.name,
        "tensor": details["name"],
        "shape": list(tensor.shape),
        "dtype": tensor.dtype,
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


def _jsonable(value: Any) -> Any:
    """Metadata with ``bytes`` (unknown custom metadata) shown by size."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return f"<{len(value)} bytes>" if isinstance(value, bytes) else value


def inspect_model(model: bytes | str | os.PathLike) -> dict:
    """``{"model", "size_bytes", "inputs", "outputs", "macs", "ops", "float_ops", "info",
    "associated_files", "metadata"}`` of a model path or bytes.

    Inputs and outputs are in subgraph order, named by signature, with their
    quantization (scale 0 for float tensors). ``ops``: ``[{"op", "dtypes", "count"}]``
    from :func:`tflite.audit.op_summary`; ``float_ops``: how many ops an int8 audit
    would reject. ``info``: the suite's :class:`ModelInfo` or None; ``metadata``: the
    standard ``ModelMetadata`` or None.
    """
    data, source = load_model(model)
    inputs, outputs = io_tensors(data)
    details = {d["index"]: d for d in Interpreter(model_content=data).get_tensor_details()}
    records = audit_ops(data)
    info = model_info(data)
    metadata = read_model_metadata(data)
    return {
        "model": source,
        "size_bytes": len(data),
        "inputs": [_tensor(t, details[t.index]) for t in inputs],
        "outputs": [_tensor(t, details[t.index]) for t in outputs],
        "macs": count_macs(data),
        "ops": [{"op": op, "dtypes": dtypes, "count": n} for op, dtypes, n in op_summary(records)],
        "float_ops": len(float_ops(records)),
        "info": None if info is None else dataclasses.asdict(info) | {"input_range": list(info.input_range)},
        "associated_files": sorted(associated_files(data)),
        "metadata": None if metadata is None else _jsonable(metadata),
    }


def format_report(report: dict) -> str:
    """Text rendering of an :func:`inspect_model` dict."""
    lines = [
        f"{report['model']}: {report['size_bytes'] / 1024:.1f} KiB, {report['macs'] / 1e6:.2f} M MACs (conv/fc ops)"
    ]
    for kind in ("inputs", "outputs"):
        lines.append(f"{kind}:")
        for t in report[kind]:
            quant = f" scale={t['scale']:.6g} zero_point={t['zero_point']}" if t["scale"] else ""
            lines.append(f"  {t['name']:<20} {t['dtype']:<8} {str(t['shape']):<18}{quant}")
    lines.append(
        f"ops ({sum(o['count'] for o in report['ops'])}, {report['float_ops']} float outside the "
        "allowed post-process op):"
    )
    lines += [f"  {o['count']:>4}  {o['op']:<32} {o['dtypes']}" for o in report["ops"]]
    info = report["info"]
    if info is None:
        lines.append("metadata: none from the vision suite")
    else:
        lines.append(
            f"metadata: {info['name']} v{info['version']}, task {info['task']}, input "
            f"{info['input_size'][1]}x{info['input_size'][0]}, mean {info['mean']} std {info['std']} "
            f"(input range {info['input_range'][0]:.4g}..{info['input_range'][1]:.4g})"
        )
        lines.append(
            f"  labels ({len(info['labels'])}): {', '.join(info['labels'][:20])}"
            + (" ..." if len(info["labels"]) > 20 else "")
        )
        lines.append("  outputs: " + ", ".join(f"{role}={name}" for role, name in info["outputs"].items()))
    if report["metadata"] is not None:
        standard = report["metadata"]
        lines.append(
            f"TFLite metadata: {standard.get('name')} (min parser {standard.get('min_parser_version')}), "
            f"associated files: {', '.join(report['associated_files']) or 'none'}"
        )
    return "\n".join(lines)
