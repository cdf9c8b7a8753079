"""The ``bench`` command: batch-1 latency of a run's Keras model and of its exported ``.tflite`` files.

Numbers only, written to ``<run>/bench.json``; never asserted in tests (the machine is shared).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from vision_core.app.config import Config
    from vision_core.app.task import Task
    from vision_core.backend import keras


def keras_latency(model: keras.Model, sample: np.ndarray, runs: int = 50, warmup: int = 5) -> dict[str, float]:
    """p50/p90/mean ms and FPS of ``model(sample, training=False)`` (``sample``: one batch-1 input)."""
    times_ms = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        np.asarray(model(sample, training=False))
        if i >= warmup:
            times_ms.append((time.perf_counter() - start) * 1e3)
    times_ms = np.asarray(times_ms)
    return {
        "p50_ms": float(np.percentile(times_ms, 50)),
        "p90_ms": float(np.percentile(times_ms, 90)),
        "mean_ms": float(times_ms.mean()),
        "fps": float(1e3 / times_ms.mean()),
    }


def bench_run(
    task: Task,
    model: keras.Model,
    config: Config,
    run_dir: Path,
    runs: int = 50,
    warmup: int = 5,
    threads: tuple[int, ...] = (1,),
) -> dict[str, Any]:
    """Keras model latency on one representative input, plus every ``<run>/exports/*.tflite``."""
    from tflite.bench import benchmark

    batch = next(iter(task.representative_data(config, batches=1)))
    result = {
        "keras": {"input_shape": [1, *batch.shape[1:]], **keras_latency(model, batch[:1], runs, warmup)},
        "load_average": list(os.getloadavg()),
        "tflite": {},
    }
    for path in sorted((run_dir / "exports").glob("*.tflite")):
        result["tflite"][path.name] = benchmark(path, threads=threads, warmup=warmup, runs=runs)["results"]
    return result
