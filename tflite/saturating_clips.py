"""Drop clip ops that the requantization after them already performs.

A model whose output is clipped (super-resolution's ``[0, 1]`` pixels) converts to int8 as
``... -> MINIMUM(x, 1) -> RELU -> QUANTIZE (int8 -> uint8)``. When the QUANTIZE's output grid
spans no more than the clip's bounds (uint8 ``[0, 255]`` standing for ``[0, 1]``), its own
saturation clips the same values, and the clip ops only cost time: at 1920x1080 XNNPACK runs
neither int8 MINIMUM nor RELU, and the two took more time than the model's last convolution.

:func:`drop_saturated_clips` rewires such a QUANTIZE to read the clip's input and removes the
clip, repeatedly (a chain of clips goes). The result equals the original up to one output step:
one requantization replaces the clip ops' own roundings.

Clips recognised (int8 tensors, the clip's output read by that QUANTIZE alone and not a model
output): RELU, RELU6, RELU_N1_TO_1, RELU_0_TO_1, and MINIMUM / MAXIMUM with a constant operand.
"""

from __future__ import annotations

import math

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite.model_file import builtin_code, pack_model

_OPS = schema.BuiltinOperator
_FIXED_BOUNDS = {
    _OPS.RELU: (0.0, math.inf),
    _OPS.RELU6: (0.0, 6.0),
    _OPS.RELU_N1_TO_1: (-1.0, 1.0),
    _OPS.RELU_0_TO_1: (0.0, 1.0),
}
_INTEGER_RANGES = {schema.TensorType.INT8: (-128, 127), schema.TensorType.UINT8: (0, 255)}


def _scale_zero(tensor: schema.TensorT) -> tuple[float, int] | None:
    quantization = tensor.quantization
    if quantization is None or quantization.scale is None or len(quantization.scale) != 1:
        return None
    return float(quantization.scale[0]), int(quantization.zeroPoint[0])


def _constant(model: schema.ModelT, tensor: schema.TensorT) -> float | None:
    """The real value of a constant int8 tensor whose elements are all equal, else None."""
    data = model.buffers[tensor.buffer].data
    params = _scale_zero(tensor)
    if data is None or params is None or tensor.type != schema.TensorType.INT8:
        return None
    values = np.frombuffer(bytes(data), np.int8)
    if not values.size or (values != values[0]).any():
        return None
    return (int(values[0]) - params[1]) * params[0]


def _clip(model: schema.ModelT, subgraph: schema.SubGraphT, op: schema.OperatorT) -> tuple[int, float, float] | None:
    """``(clipped input tensor, low, high)`` of a clip op, else None."""
    builtin = builtin_code(model.operatorCodes[op.opcodeIndex])
    if builtin in _FIXED_BOUNDS:
        return (op.inputs[0], *_FIXED_BOUNDS[builtin])
    if builtin not in (_OPS.MINIMUM, _OPS.MAXIMUM) or len(op.inputs) != 2:
        return None
    for variable, other in (op.inputs, op.inputs[::-1]):
        value = _constant(model, subgraph.tensors[other])
        if value is not None and model.buffers[subgraph.tensors[variable].buffer].data is None:
            return (variable, -math.inf, value) if builtin == _OPS.MINIMUM else (variable, value, math.inf)
    return None


def _grid(tensor: schema.TensorT) -> tuple[float, float] | None:
    params, integers = _scale_zero(tensor), _INTEGER_RANGES.get(tensor.type)
    if params is None or integers is None:
        return None
    scale, zero = params
    return (integers[0] - zero) * scale, (integers[1] - zero) * scale


def _drop_one(model: schema.ModelT, subgraph: schema.SubGraphT) -> bool:
    readers: dict[int, list[schema.OperatorT]] = {}
    for op in subgraph.operators:
        for index in op.inputs:
            readers.setdefault(index, []).append(op)
    for op in subgraph.operators:
        clip = _clip(model, subgraph, op)
        if clip is None or len(op.outputs) != 1 or op.outputs[0] in subgraph.outputs:
            continue
        variable, low, high = clip
        if subgraph.tensors[variable].type != schema.TensorType.INT8:
            continue
        (reader, *others) = readers.get(op.outputs[0], [None])
        if others or reader is None or builtin_code(model.operatorCodes[reader.opcodeIndex]) != _OPS.QUANTIZE:
            continue
        grid = _grid(subgraph.tensors[reader.outputs[0]])
        if grid is None:
            continue
        step = (grid[1] - grid[0]) / 255.0
        if low - step / 2 <= grid[0] and grid[1] <= high + step / 2:
            reader.inputs = [variable]
            subgraph.operators.remove(op)
            return True
    return False


def drop_saturated_clips(data: bytes) -> tuple[bytes, int]:
    """``(flatbuffer, number of clip ops dropped)``; the input bytes when none is."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    dropped = 0
    for subgraph in model.subgraphs:
        while _drop_one(model, subgraph):
            dropped += 1
    return (pack_model(model, len(data)), dropped) if dropped else (data, 0)
