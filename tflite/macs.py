"""Multiply-accumulate count of a ``.tflite`` model from its tensor shapes.

Counts the ops that dominate vision models; every other op counts zero (so the total
is a floor). One function per op type in :data:`MAC_COUNTERS`, each given the op's
input and output shapes (batch included):

* ``CONV_2D``: output ``N·Ho·Wo·Co`` × filter ``Kh·Kw·Ci/groups`` (filter ``[Co, Kh, Kw, Ci/groups]``)
* ``DEPTHWISE_CONV_2D``: output ``N·Ho·Wo·C`` × ``Kh·Kw`` (filter ``[1, Kh, Kw, C]``)
* ``FULLY_CONNECTED``: output elements × input features (weights ``[units, features]``)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite.model_file import tensor_shape

Shapes = list[tuple[int, ...]]


def _conv_2d(inputs: Shapes, outputs: Shapes) -> int:
    return int(np.prod(outputs[0])) * int(np.prod(inputs[1][1:]))


def _depthwise_conv_2d(inputs: Shapes, outputs: Shapes) -> int:
    return int(np.prod(outputs[0])) * int(np.prod(inputs[1][1:3]))


def _fully_connected(inputs: Shapes, outputs: Shapes) -> int:
    return int(np.prod(outputs[0])) * int(inputs[1][-1])


MAC_COUNTERS: dict[int, Callable[[Shapes, Shapes], int]] = {
    schema.BuiltinOperator.CONV_2D: _conv_2d,
    schema.BuiltinOperator.DEPTHWISE_CONV_2D: _depthwise_conv_2d,
    schema.BuiltinOperator.FULLY_CONNECTED: _fully_connected,
}


def count_macs(data: bytes) -> int:
    """MACs of one inference of subgraph 0 of flatbuffer ``data`` (see the module docstring)."""
    model = schema.Model.GetRootAs(data, 0)
    subgraph = model.Subgraphs(0)

    def shapes(indices: np.ndarray) -> Shapes:
        return [tensor_shape(subgraph.Tensors(int(i))) if i >= 0 else () for i in indices]

    total = 0
    for i in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        # Codes above 127 live in BuiltinCode only; older files fill DeprecatedBuiltinCode only.
        counter = MAC_COUNTERS.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if counter:
            total += counter(shapes(op.InputsAsNumpy()), shapes(op.OutputsAsNumpy()))
    return total
