"""Op audit of a ``.tflite`` file: every op with the dtypes of its tensors.

An int8 model must hold no float op: an op counts as float when any of its input or
output tensors is float32/float16. The detection post-process custom op is the one
exception (it decodes boxes in float by design), and with it the DEQUANTIZE ops whose
outputs feed only that op (its inputs must be float).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

FLOAT_DTYPES = (np.float32, np.float16, np.float64)
ALLOWED_FLOAT_OPS = frozenset({"TFLite_Detection_PostProcess"})


@dataclass(frozen=True)
class OpRecord:
    index: int
    op: str
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]
    output_names: tuple[str, ...]
    inputs: tuple[int, ...] = ()
    outputs: tuple[int, ...] = ()

    @property
    def is_float(self) -> bool:
        return any(d in ("float32", "float16", "float64") for d in self.input_dtypes + self.output_dtypes)


class FloatOpError(ValueError):
    """An int8 model still holds float ops."""


def _interpreter(model: bytes | str) -> Interpreter:
    kwargs = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    if isinstance(model, (bytes, bytearray)):
        return Interpreter(model_content=bytes(model), **kwargs)
    return Interpreter(model_path=str(model), **kwargs)


def audit_ops(model: bytes | str) -> list[OpRecord]:
    """Every op of ``model`` (file path or flatbuffer bytes), in execution order."""
    interpreter = _interpreter(model)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}

    def dtypes(indices: np.ndarray) -> tuple[str, ...]:
        return tuple(np.dtype(tensors[i]["dtype"]).name for i in indices if i >= 0 and i in tensors)

    return [
        OpRecord(
            index=op["index"],
            op=op["op_name"],
            input_dtypes=dtypes(op["inputs"]),
            output_dtypes=dtypes(op["outputs"]),
            output_names=tuple(tensors[i]["name"] for i in op["outputs"] if i in tensors),
            inputs=tuple(int(i) for i in op["inputs"]),
            outputs=tuple(int(i) for i in op["outputs"]),
        )
        for op in interpreter._get_ops_details()
    ]


def float_ops(records: list[OpRecord], allowed: frozenset[str] = ALLOWED_FLOAT_OPS) -> list[OpRecord]:
    """The float ops of ``records``, not counting ``allowed`` ops and DEQUANTIZE ops that feed only them."""
    consumers: dict[int, set[str]] = {}
    for r in records:
        for tensor in r.inputs:
            consumers.setdefault(tensor, set()).add(r.op)

    def feeds_allowed(r: OpRecord) -> bool:
        return (
            r.op == "DEQUANTIZE"
            and bool(r.outputs)
            and all(consumers.get(t) and consumers[t] <= allowed for t in r.outputs)
        )

    return [r for r in records if r.is_float and r.op not in allowed and not feeds_allowed(r)]


def require_int8(
    model: bytes | str, allowed: frozenset[str] = ALLOWED_FLOAT_OPS, source: str = "model"
) -> list[OpRecord]:
    """Audit ``model`` and raise :class:`FloatOpError` naming every float op left in it."""
    records = audit_ops(model)
    bad = float_ops(records, allowed)
    if bad:
        listed = "; ".join(
            f"#{r.index} {r.op} ({'/'.join(r.output_names)}) "
            f"in={','.join(r.input_dtypes)} out={','.join(r.output_dtypes)}"
            for r in bad[:20]
        )
        raise FloatOpError(f"{source}: {len(bad)} float op(s) in an int8 model: {listed}")
    return records


def op_summary(records: list[OpRecord]) -> list[tuple[str, str, int]]:
    """``(op type, 'in->out' dtypes, count)`` rows, most frequent first."""
    counts = Counter((r.op, f"{','.join(r.input_dtypes)}->{','.join(r.output_dtypes)}") for r in records)
    return [(op, sig, n) for (op, sig), n in counts.most_common()]
