"""Latency of a ``.tflite`` model per thread count: p50 / p90 ms, FPS and achieved GMAC/s.

Each thread count gets a fresh interpreter (default XNNPACK delegate), ``warmup``
untimed runs, then ``runs`` timed runs on one fixed random input of the model's input
type. FPS is ``1000 / mean ms`` of sequential single-image runs; GMAC/s is the MAC count
over the median latency. The report names the model's compute dtype (``int8`` or
``float32``) and the load average when timing started, since a shared CPU changes every
number; :func:`tflite.peak.add_peak` puts the machine's own peak for that dtype beside it.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite.macs import MAC_COUNTERS, count_macs
from tflite.metadata import model_info
from tflite.model_file import load_model, tensor_shape
from tflite.runtime import TFLiteModel

# The activation type of a MAC op decides the kernel family that runs it (uint8 runs the int8 path).
_COMPUTE_DTYPES = {
    schema.TensorType.INT8: "int8",
    schema.TensorType.UINT8: "int8",
    schema.TensorType.FLOAT32: "float32",
}


def model_macs(data: bytes) -> int:
    """MACs per inference: the metadata's count when present, else counted from the conv/fc ops."""
    info = model_info(data)
    return info.macs if info is not None and info.macs is not None else count_macs(data)


def compute_dtype(data: bytes) -> str | None:
    """``int8`` or ``float32``: the activation type of the conv/fc ops holding most MACs (None if other)."""
    model = schema.Model.GetRootAs(data, 0)
    subgraph = model.Subgraphs(0)
    macs: dict[int, int] = defaultdict(int)
    for i in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        counter = MAC_COUNTERS.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if counter:
            activation, weights = (subgraph.Tensors(int(t)) for t in op.InputsAsNumpy()[:2])
            output = subgraph.Tensors(int(op.OutputsAsNumpy()[0]))
            macs[activation.Type()] += counter(
                [tensor_shape(activation), tensor_shape(weights)], [tensor_shape(output)]
            )
    return _COMPUTE_DTYPES.get(max(macs, key=macs.get)) if macs else None


def random_input(model: TFLiteModel, seed: int = 0) -> np.ndarray:
    """A random input in the model's own input type and shape."""
    rng = np.random.default_rng(seed)
    dtype = model.input_dtype
    if dtype.kind == "f":
        return rng.standard_normal(model.input_shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=model.input_shape, endpoint=True).astype(dtype)


def latencies_ms(runner: TFLiteModel, x: np.ndarray, runs: int) -> np.ndarray:
    """Wall time in ms of each of ``runs`` sequential runs of ``runner`` on raw input ``x``."""
    times_ms = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        runner.run_raw(x)
        times_ms[i] = (time.perf_counter() - start) * 1e3
    return times_ms


def benchmark(
    model: bytes | str | os.PathLike,
    threads: tuple[int, ...] = (1,),
    warmup: int = 10,
    runs: int = 50,
    macs: int | None = None,
) -> dict:
    """Timing of ``model`` for each thread count.

    ``macs`` (per inference) overrides :func:`model_macs`. Returns ``{"model", "input":
    {"shape", "dtype"}, "compute_dtype", "macs", "warmup", "runs", "load_average" (1, 5,
    15 min), "results": [{"threads", "p50_ms", "p90_ms", "mean_ms", "fps", "gmacs_per_s"}]}``.
    """
    if runs < 1 or warmup < 0 or not threads or min(threads) < 1:
        raise ValueError(
            f"need runs >= 1, warmup >= 0 and thread counts >= 1, got runs={runs} warmup={warmup} threads={threads}"
        )
    data, source = load_model(model)
    macs = model_macs(data) if macs is None else macs
    load_average = list(os.getloadavg())
    results, runner = [], None
    for count in threads:
        runner = TFLiteModel(data, num_threads=count)
        x = random_input(runner)
        latencies_ms(runner, x, warmup)
        times_ms = latencies_ms(runner, x, runs)
        p50 = float(np.percentile(times_ms, 50))
        results.append(
            {
                "threads": count,
                "p50_ms": p50,
                "p90_ms": float(np.percentile(times_ms, 90)),
                "mean_ms": float(times_ms.mean()),
                "fps": float(1e3 / times_ms.mean()),
                "gmacs_per_s": macs / (p50 * 1e-3) / 1e9 if macs else None,
            }
        )
    return {
        "model": source,
        "input": {"shape": list(runner.input_shape), "dtype": runner.input_dtype.name},
        "compute_dtype": compute_dtype(data),
        "macs": macs,
        "warmup": warmup,
        "runs": runs,
        "load_average": load_average,
        "results": results,
    }
