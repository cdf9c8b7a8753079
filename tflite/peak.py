"""The machine's own peak: GMAC/s of one large CONV_2D, int8 and float32, built without TensorFlow.

A benchmark's GMAC/s means little on its own; divided by what the same runtime reaches on
its most favourable op it says how much of this CPU a model uses. The reference op is
:data:`PEAK_SHAPE`, a 3x3 stride-1 SAME convolution 28x28x256 -> 28x28x256 (0.46 G MACs).
It was chosen by measurement (ai-edge-litert 2.3, Xeon with AVX512-VNNI and AMX, 1 and 2
threads): among 1x1, 3x3, 5x5 and 7x7 convolutions on 14x14 to 56x56 grids with 64 to 1024
channels it ran int8 fastest (~800 GMAC/s on one thread, 56x56x256 ~700, large 1x1 convs
510-630), and float32 within noise of the best (every candidate ran 32-39 GMAC/s). Why:

* a 3x3 kernel makes each output a 2304-deep dot product (XNNPACK's indirect GEMM), which
  amortises the per-pixel indirection and the requantization of every output;
* 256 channels are a whole multiple of every int8 and float kernel tile, so no lane is
  padded (XNNPACK pads each tap's input channels to its dot-product depth: a 7x7 int8 conv
  takes about as long with 3 input channels as with 32);
* int8 input, packed weights and output (0.2 + 0.6 + 0.2 MB) stay in the 2 MB L2, so the
  rate is compute-bound; the same conv on 56x56 spills and runs ~12% slower.

Int8 follows the TFLite quantization spec: int8 activations (asymmetric, zero point in
[-128, 127]), int8 weights symmetric per output channel (``quantized_dimension`` 0), int32
bias with scale ``input_scale · weight_scale[c]`` and zero point 0. :func:`measure_peak`
times the model with :func:`tflite.bench.benchmark` (XNNPACK delegate, default on), and
:func:`add_peak` puts the matching peak beside every row of a benchmark report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite.bench import benchmark
from tflite.model_file import FILE_IDENTIFIER, SIGNATURE, _AlignedBufferT

PEAK_DTYPES = ("int8", "float32")
_OP_VERSION = {"int8": 3, "float32": 1}  # CONV_2D version 3 is the per-channel int8 kernel
_INPUT_RANGE = (-1.0, 1.0)
_OUTPUT_RANGE = (-4.0, 4.0)  # default weights keep the variance: U(-1, 1) inputs give outputs of std ~0.58


@dataclass(frozen=True)
class ConvShape:
    """A square-kernel, stride-1, SAME CONV_2D on a batch-1 NHWC input."""

    height: int
    width: int
    in_channels: int
    out_channels: int
    kernel: int

    @property
    def macs(self) -> int:
        return self.height * self.width * self.out_channels * self.kernel * self.kernel * self.in_channels


PEAK_SHAPE = ConvShape(height=28, width=28, in_channels=256, out_channels=256, kernel=3)


def conv_model(
    shape: ConvShape,
    dtype: str,
    weights: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    input_range: tuple[float, float] = _INPUT_RANGE,
    output_range: tuple[float, float] = _OUTPUT_RANGE,
) -> bytes:
    """A ``.tflite`` flatbuffer holding one CONV_2D of ``shape`` in ``dtype`` (``int8`` or ``float32``).

    ``weights``: float ``[out_channels, kernel, kernel, in_channels]`` (TFLite's OHWI;
    default normal with std ``1 / sqrt(fan_in)``, seed 0); ``bias``: float ``[out_channels]`` (default zeros).
    Int8 models quantize the weights per output channel and take their activation
    quantization from the float ``input_range`` / ``output_range``. The signature is
    ``serving_default(input) -> {output}``.
    """
    if dtype not in PEAK_DTYPES:
        raise ValueError(f"conv model dtype must be one of {PEAK_DTYPES}, got {dtype!r}")
    filter_shape = (shape.out_channels, shape.kernel, shape.kernel, shape.in_channels)
    if weights is None:
        fan_in = shape.kernel * shape.kernel * shape.in_channels
        weights = np.random.default_rng(0).normal(0.0, fan_in**-0.5, filter_shape)
    weights = np.asarray(weights, np.float32)
    bias = np.zeros(shape.out_channels, np.float32) if bias is None else np.asarray(bias, np.float32)
    if weights.shape != filter_shape or bias.shape != (shape.out_channels,):
        raise ValueError(
            f"{shape}: weights must be {filter_shape} and bias ({shape.out_channels},), "
            f"got {weights.shape} and {bias.shape}"
        )
    input_shape = [1, shape.height, shape.width, shape.in_channels]
    output_shape = [1, shape.height, shape.width, shape.out_channels]
    if dtype == "float32":
        tensors = [
            _tensor("input", input_shape, schema.TensorType.FLOAT32, 1),
            _tensor("filter", filter_shape, schema.TensorType.FLOAT32, 2),
            _tensor("bias", [shape.out_channels], schema.TensorType.FLOAT32, 3),
            _tensor("output", output_shape, schema.TensorType.FLOAT32, 4),
        ]
        constants = [weights.tobytes(), bias.tobytes()]
    else:
        input_scale, input_zero = activation_quantization(*input_range)
        # Scales in float32, as stored, so the bias scale is exactly input scale x weight scale.
        weight_scales = (np.maximum(np.abs(weights).reshape(shape.out_channels, -1).max(axis=1), 1e-12) / 127.0).astype(
            np.float32
        )
        q_weights = np.clip(np.round(weights / weight_scales[:, None, None, None]), -127, 127).astype(np.int8)
        bias_scales = np.float32(input_scale) * weight_scales
        q_bias = np.round(bias / bias_scales).astype(np.int32)
        output_scale, output_zero = activation_quantization(*output_range)
        tensors = [
            _tensor("input", input_shape, schema.TensorType.INT8, 1, [input_scale], [input_zero]),
            _tensor("filter", filter_shape, schema.TensorType.INT8, 2, weight_scales, [0] * shape.out_channels),
            _tensor("bias", [shape.out_channels], schema.TensorType.INT32, 3, bias_scales, [0] * shape.out_channels),
            _tensor("output", output_shape, schema.TensorType.INT8, 4, [output_scale], [output_zero]),
        ]
        constants = [q_weights.tobytes(), q_bias.tobytes()]
    return _single_op_model(tensors, constants, dtype)


def activation_quantization(low: float, high: float) -> tuple[float, int]:
    """``(scale, zero_point)`` of an int8 activation spanning ``[low, high]`` (which must hold 0)."""
    if not low <= 0.0 <= high or low == high:
        raise ValueError(f"an activation range must hold 0 and not be empty, got [{low}, {high}]")
    scale = (high - low) / 255.0
    return scale, int(np.clip(np.round(-128 - low / scale), -128, 127))


def measure_peak(
    dtype: str, threads: tuple[int, ...] = (1,), warmup: int = 10, runs: int = 50, shape: ConvShape = PEAK_SHAPE
) -> dict:
    """Time the ``dtype`` conv of ``shape`` with :func:`tflite.bench.benchmark` (GMAC/s over the median).

    Returns ``{"dtype", "shape": {height, width, in_channels, out_channels, kernel}, "macs",
    "load_average", "results": [{"threads", "p50_ms", "gmacs_per_s"}]}``.
    """
    report = benchmark(conv_model(shape, dtype), threads=threads, warmup=warmup, runs=runs, macs=shape.macs)
    return {
        "dtype": dtype,
        "shape": asdict(shape),
        "macs": shape.macs,
        "load_average": report["load_average"],
        "results": [{k: row[k] for k in ("threads", "p50_ms", "gmacs_per_s")} for row in report["results"]],
    }


def add_peak(report: dict, shape: ConvShape = PEAK_SHAPE) -> dict:
    """A copy of ``report`` (from :func:`tflite.bench.benchmark`) with the matching peak beside each row.

    The peak conv of the report's ``compute_dtype`` is timed now, with the report's thread
    counts, warm-up and runs. Adds ``"peak"`` (see :func:`measure_peak`; None when the model
    computes in neither int8 nor float32) and per row ``peak_gmacs_per_s`` and
    ``peak_ratio`` = ``gmacs_per_s / peak_gmacs_per_s`` (None where either is unknown).
    """
    dtype = report["compute_dtype"]
    threads = tuple(row["threads"] for row in report["results"])
    peak = measure_peak(dtype, threads, report["warmup"], report["runs"], shape) if dtype else None
    peaks = {row["threads"]: row["gmacs_per_s"] for row in peak["results"]} if peak else {}
    rows = []
    for row in report["results"]:
        peak_rate = peaks.get(row["threads"])
        ratio = row["gmacs_per_s"] / peak_rate if peak_rate and row["gmacs_per_s"] is not None else None
        rows.append({**row, "peak_gmacs_per_s": peak_rate, "peak_ratio": ratio})
    return {**report, "peak": peak, "results": rows}


def _tensor(
    name: str,
    shape: Iterable[int],
    dtype: int,
    buffer: int,
    scale: Iterable[float] | None = None,
    zero_point: Iterable[int] | None = None,
) -> schema.TensorT:
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name.encode(), [int(d) for d in shape], dtype, buffer
    if scale is not None:
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.scale = [float(s) for s in scale]
        tensor.quantization.zeroPoint = [int(z) for z in zero_point]
        tensor.quantization.quantizedDimension = 0
    return tensor


def _single_op_model(tensors: list[schema.TensorT], constants: list[bytes], dtype: str) -> bytes:
    """Tensors ``input, filter, bias, output`` (buffers 1-4; filter and bias hold ``constants``) -> flatbuffer."""
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CONV_2D
    code.version = _OP_VERSION[dtype]
    options = schema.Conv2DOptionsT()
    options.padding, options.strideH, options.strideW = schema.Padding.SAME, 1, 1
    options.dilationHFactor = options.dilationWFactor = 1
    options.fusedActivationFunction = schema.ActivationFunctionType.NONE
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.Conv2DOptions, options
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.operators, subgraph.inputs, subgraph.outputs = tensors, [op], [0], [3]
    subgraph.name = b"main"
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SIGNATURE.encode(), 0
    signature.inputs, signature.outputs = [_tensor_map("input", 0)], [_tensor_map("output", 3)]
    model = schema.ModelT()
    model.version, model.description = 3, f"peak CONV_2D ({dtype})".encode()
    model.operatorCodes, model.subgraphs, model.signatureDefs = [code], [subgraph], [signature]
    # Buffer 0 is the empty sentinel by convention; activations get empty buffers of their own.
    model.buffers = [_AlignedBufferT(content) for content in (None, None, *constants, None)]
    builder = flatbuffers.Builder(sum(len(c) for c in constants) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def _tensor_map(name: str, index: int) -> schema.TensorMapT:
    entry = schema.TensorMapT()
    entry.name, entry.tensorIndex = name.encode(), index
    return entry
