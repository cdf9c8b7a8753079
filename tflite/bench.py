"""Latency of a ``.tflite`` model per thread count: p50 / p90 ms, FPS and achieved GMAC/s.

Each thread count gets a fresh interpreter (default XNNPACK delegate), ``warmup``
untimed runs, then ``runs`` timed runs on one fixed random input of the model's input
type. FPS is ``1000 / mean ms`` of sequential single-image runs; GMAC/s is the MAC count
over the median latency.
"""

from __future__ import annotations

import os
import time

import numpy as np

from tflite.macs import count_macs
from tflite.metadata import model_info
from tflite.model_file import load_model
from tflite.runtime import TFLiteModel


def model_macs(data: bytes) -> int:
    """MACs per inference: the metadata's count when present, else counted from the conv/fc ops."""
    info = model_info(data)
    return info.macs if info is not None and info.macs is not None else count_macs(data)


def random_input(model: TFLiteModel, seed: int = 0) -> np.ndarray:
    """A random input in the model's own input type and shape."""
    rng = np.random.default_rng(seed)
    dtype = model.input_dtype
    if dtype.kind == "f":
        return rng.standard_normal(model.input_shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=model.input_shape, endpoint=True).astype(dtype)


def benchmark(model: bytes | str | os.PathLike, threads: tuple[int, ...] = (1,), warmup: int = 10,
              runs: int = 50, macs: int | None = None) -> dict:
    """Timing of ``model`` for each thread count.

    ``macs`` (per inference) overrides :func:`model_macs`. Returns ``{"model", "input":
    {"shape", "dtype"}, "macs", "warmup", "runs", "results": [{"threads", "p50_ms",
    "p90_ms", "mean_ms", "fps", "gmacs_per_s"}]}``.
    """
    if runs < 1 or warmup < 0 or not threads or min(threads) < 1:
        raise ValueError(f"need runs >= 1, warmup >= 0 and thread counts >= 1, got runs={runs} "
                         f"warmup={warmup} threads={threads}")
    data, source = load_model(model)
    macs = model_macs(data) if macs is None else macs
    results, runner = [], None
    for count in threads:
        runner = TFLiteModel(data, num_threads=count)
        x = random_input(runner)
        for _ in range(warmup):
            runner.run_raw(x)
        times_ms = np.empty(runs)
        for i in range(runs):
            start = time.perf_counter()
            runner.run_raw(x)
            times_ms[i] = (time.perf_counter() - start) * 1e3
        p50 = float(np.percentile(times_ms, 50))
        results.append({
            "threads": count, "p50_ms": p50, "p90_ms": float(np.percentile(times_ms, 90)),
            "mean_ms": float(times_ms.mean()), "fps": float(1e3 / times_ms.mean()),
            "gmacs_per_s": macs / (p50 * 1e-3) / 1e9 if macs else None,
        })
    return {"model": source, "input": {"shape": list(runner.input_shape), "dtype": runner.input_dtype.name},
            "macs": macs, "warmup": warmup, "runs": runs, "results": results}
