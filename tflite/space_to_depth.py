"""Run int8 convolutions with few input channels on 2x2 pixel blocks: the same integers, faster.

XNNPACK's int8 convolution pads every kernel tap's input channels to its dot-product depth,
so a 5x5 convolution of one channel costs about what it would with a dozen. ESPCN's first
layer (360x640x1 -> 64, 5x5) took a third of the super-resolution model's time that way.

:func:`space_to_depth_convs` rewrites each such ``CONV_2D`` of an int8 flatbuffer into

    SPACE_TO_DEPTH(2) -> CONV_2D (K x K blocks, 4 * C_in -> 4 * C_out) -> DEPTH_TO_SPACE(2)

where a k x k kernel (k odd, stride 1, SAME) becomes a K x K kernel over 2x2 blocks,
``K = 2 * ceil(p / 2) + 1`` with ``p = (k - 1) / 2`` (5x5 -> 3x3, 3x3 -> 3x3, 7x7 -> 5x5). Output
pixel ``(2i + a, 2j + b)`` is block ``(i, j)``'s channel ``(2a + b) * C_out + c`` (TFLite's
depth-to-space order); its kernel holds the original taps at their offsets and zeros elsewhere.
Every output is the same sum of the same int8 products, requantized with the same per-channel
scales (replicated four times), so the rewritten model computes bit-identical outputs; the
block convolution does more multiply-adds (zeros included), so MAC counts of a rewritten file
overstate the work: count them on the original.

A convolution is rewritten when its input is int8 ``[1, H, W, C_in]`` with H and W even and
known, ``C_in <= max_in_channels``, the kernel square and odd (3 or more), stride and dilation 1,
SAME padding, and its filter and bias are constants no other op reads.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite.model_file import builtin_code, pack_model

BLOCK = 2
MAX_IN_CHANNELS = 4
_OP_VERSIONS = {schema.BuiltinOperator.SPACE_TO_DEPTH: 2, schema.BuiltinOperator.DEPTH_TO_SPACE: 2}


def block_kernel(kernel: np.ndarray) -> np.ndarray:
    """OHWI ``[C_out, k, k, C_in]`` -> the block kernel ``[4 C_out, K, K, 4 C_in]`` (module docstring)."""
    out_channels, size, _, in_channels = kernel.shape
    pad = (size - 1) // 2
    reach = -(-pad // 2)
    blocks = 2 * reach + 1
    result = np.zeros((BLOCK * BLOCK, out_channels, blocks, blocks, BLOCK * BLOCK, in_channels), kernel.dtype)
    for a in range(BLOCK):
        for b in range(BLOCK):
            for oy in range(-reach, reach + 1):
                for ox in range(-reach, reach + 1):
                    for dy in range(BLOCK):
                        for dx in range(BLOCK):
                            ky, kx = BLOCK * oy + dy - a + pad, BLOCK * ox + dx - b + pad
                            if 0 <= ky < size and 0 <= kx < size:
                                result[a * BLOCK + b, :, oy + reach, ox + reach, dy * BLOCK + dx] = kernel[:, ky, kx]
    return result.reshape(BLOCK * BLOCK * out_channels, blocks, blocks, BLOCK * BLOCK * in_channels)


def _opcode(model: schema.ModelT, builtin: int) -> int:
    for index, code in enumerate(model.operatorCodes):
        if builtin_code(code) == builtin and not code.customCode:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.version = builtin, _OP_VERSIONS[builtin]
    code.deprecatedBuiltinCode = min(builtin, 127)
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _eligible(model: schema.ModelT, subgraph: schema.SubGraphT, op: schema.OperatorT, readers, max_in) -> bool:
    if builtin_code(model.operatorCodes[op.opcodeIndex]) != schema.BuiltinOperator.CONV_2D:
        return False
    options = op.builtinOptions
    if (options.strideH, options.strideW, options.dilationHFactor, options.dilationWFactor) != (1, 1, 1, 1):
        return False
    if options.padding != schema.Padding.SAME or len(op.inputs) < 2:
        return False
    source, kernel = subgraph.tensors[op.inputs[0]], subgraph.tensors[op.inputs[1]]
    shape = list(source.shape)
    signature = list(source.shapeSignature) if source.shapeSignature is not None else shape
    if len(shape) != 4 or shape[0] != 1 or signature != shape or shape[1] % BLOCK or shape[2] % BLOCK:
        return False
    if source.type != schema.TensorType.INT8 or not 0 < shape[3] <= max_in:
        return False
    size = kernel.shape[1]
    if kernel.type != schema.TensorType.INT8 or size < 3 or size % 2 == 0 or kernel.shape[2] != size:
        return False
    constants = [i for i in op.inputs[1:] if i >= 0]
    return all(readers[i] == 1 and model.buffers[subgraph.tensors[i].buffer].data is not None for i in constants)


def _tile_quantization(tensor: schema.TensorT) -> None:
    quantization = tensor.quantization
    if quantization is not None and quantization.scale is not None and len(quantization.scale) > 1:
        quantization.scale = list(np.tile(quantization.scale, BLOCK * BLOCK))
        quantization.zeroPoint = list(np.tile(quantization.zeroPoint, BLOCK * BLOCK))


def _intermediate(like: schema.TensorT, name: str, shape: list[int], model: schema.ModelT) -> schema.TensorT:
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type = name.encode(), shape, like.type
    tensor.quantization = like.quantization
    tensor.buffer = len(model.buffers)
    model.buffers.append(schema.BufferT())
    return tensor


def _operator(opcode: int, inputs: list[int], outputs: list[int], options_type: int, options) -> schema.OperatorT:
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, inputs, outputs
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def _rewrite(model: schema.ModelT, subgraph: schema.SubGraphT, op: schema.OperatorT) -> list[schema.OperatorT]:
    source, kernel = subgraph.tensors[op.inputs[0]], subgraph.tensors[op.inputs[1]]
    output = subgraph.tensors[op.outputs[0]]
    _, height, width, in_channels = source.shape
    out_channels = kernel.shape[0]
    weights = np.frombuffer(bytes(model.buffers[kernel.buffer].data), np.int8).reshape(kernel.shape)
    blocked = block_kernel(weights)
    model.buffers[kernel.buffer].data = blocked.tobytes()
    kernel.shape = list(blocked.shape)
    _tile_quantization(kernel)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        bias = subgraph.tensors[op.inputs[2]]
        values = np.frombuffer(bytes(model.buffers[bias.buffer].data), np.int32)
        model.buffers[bias.buffer].data = np.tile(values, BLOCK * BLOCK).tobytes()
        bias.shape = [BLOCK * BLOCK * out_channels]
        _tile_quantization(bias)
    name = output.name.decode()
    blocks_in = _intermediate(
        source, f"{name}/space_to_depth", [1, height // BLOCK, width // BLOCK, BLOCK * BLOCK * in_channels], model
    )
    blocks_out = _intermediate(
        output, f"{name}/block_conv", [1, height // BLOCK, width // BLOCK, BLOCK * BLOCK * out_channels], model
    )
    first = len(subgraph.tensors)
    subgraph.tensors.extend([blocks_in, blocks_out])
    to_depth = schema.SpaceToDepthOptionsT()
    to_space = schema.DepthToSpaceOptionsT()
    to_depth.blockSize = to_space.blockSize = BLOCK
    conv = _operator(op.opcodeIndex, [first, *op.inputs[1:]], [first + 1], op.builtinOptionsType, op.builtinOptions)
    return [
        _operator(
            _opcode(model, schema.BuiltinOperator.SPACE_TO_DEPTH),
            [op.inputs[0]],
            [first],
            schema.BuiltinOptions.SpaceToDepthOptions,
            to_depth,
        ),
        conv,
        _operator(
            _opcode(model, schema.BuiltinOperator.DEPTH_TO_SPACE),
            [first + 1],
            list(op.outputs),
            schema.BuiltinOptions.DepthToSpaceOptions,
            to_space,
        ),
    ]


def space_to_depth_convs(data: bytes, max_in_channels: int = MAX_IN_CHANNELS) -> tuple[bytes, int]:
    """``(flatbuffer, number of rewritten convolutions)``; the input bytes when none qualifies."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    rewritten = 0
    for subgraph in model.subgraphs:
        readers = np.zeros(len(subgraph.tensors), int)
        for op in subgraph.operators:
            for index in op.inputs:
                if index >= 0:
                    readers[index] += 1
        operators = []
        for op in subgraph.operators:
            if _eligible(model, subgraph, op, readers, max_in_channels):
                operators.extend(_rewrite(model, subgraph, op))
                rewritten += 1
            else:
                operators.append(op)
        subgraph.operators = operators
    if not rewritten:
        return data, 0
    return pack_model(model, len(data) + 4096), rewritten
