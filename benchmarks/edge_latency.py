"""Edge latency of the suite's int8 models, measured side by side in one run (JSON out).

1. ``mobilenet_v2``: the suite's MobileNetV2-1.0 at 224 and ``keras.applications.MobileNetV2``
   holding the same weights (copied by variable path; their float outputs are compared),
   both converted to int8 by :func:`vision_core.quant.convert.convert` with the same
   calibration images (built-in shapes scenes), timed interleaved run by run (A/B/A/B,
   so drift hits both alike) per thread count. Target: suite / keras p50 <= 1.05.
2. ``resnet50``: the suite's ResNet-50 at 224, float32 vs int8 TFLite, interleaved the same
   way. Target: int8 >= 3x faster on 2 threads.
3. ``peak``: ``tflite bench`` of both int8 models with the machine's int8 peak conv
   (:mod:`tflite.peak`) timed in the same run. Targets: ResNet-50 >= 65% of peak, MobileNetV2 >= 35%.
4. ``where_time_goes``: every op of both int8 models cut out as a one-op model and timed
   alone (1 thread), summed by kind (op type and kernel size): ms, MACs, GMAC/s and the
   weight quantization (per channel or per tensor); and a stem-sized int8 7x7 conv timed
   for 3 to 64 input channels. Shows which ops hold the models below peak.

Models carry random He-normal weights (nothing is downloaded); latency does not depend on them.
Machine info (CPU model, load average before and after, versions) goes in the JSON.

On a CPU with AMX, XNNPACK runs large int8 convolutions on AMX tiles, which lifts the int8
peak 3-4x above what AVX512-VNNI kernels reach; ``--deny-amx`` keeps the whole run on the
VNNI kernels (:mod:`no_amx`) so both peaks can be measured and reported.

    python benchmarks/edge_latency.py [--threads 1,2] [--runs 100] [--warmup 10] [--calibration 32] [--deny-amx]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections import defaultdict

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from machine import machine_info
from no_amx import deny_amx
from tqdm import tqdm

from tflite.audit import audit_ops, op_summary
from tflite.bench import benchmark, latencies_ms, random_input
from tflite.macs import count_macs
from tflite.model_file import FILE_IDENTIFIER
from tflite.peak import ConvShape, add_peak, conv_model
from tflite.runtime import TFLiteModel
from vision_core.backbones import build_backbone
from vision_core.backend import keras
from vision_core.quant.convert import convert
from vision_core.quant.int8_check import shapes_data
from vision_core.storage.atomic import write_atomic
from vision_core.storage.weights import copy_weights

SIZE = 224
SPEEDUP_THREADS = 2
STEM_INPUT_CHANNELS = (3, 8, 16, 32, 64)
_OP_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items() if name.isupper()}


def he_normal_weights(model, seed: int = 0):
    """Give every conv/dense kernel He-normal values (std ``sqrt(2 / fan_in)``); returns ``model``.

    Keras' default init leaves the randomly initialised MobileNetV2 with all-equal logits
    (its activations fade to zero), which would make the float comparison and the int8
    calibration trivial; He-scaled kernels keep the activations alive to the head.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            kernel = layer.kernel
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            fan_in = int(np.prod(kernel.shape[:2] if depthwise else kernel.shape[:-1]))
            kernel.assign(rng.normal(0.0, np.sqrt(2.0 / fan_in), kernel.shape).astype("float32"))
    return model


def convert_models(calibration_images: int) -> tuple[dict[str, bytes], dict]:
    """The four TFLite models and how the two MobileNetV2 builds agree in float."""
    images, _ = shapes_data(calibration_images, SIZE, seed=3)
    calibration = [images[i : i + 8] for i in range(0, len(images), 8)]
    suite = he_normal_weights(
        build_backbone("mobilenet_v2", (SIZE, SIZE, 3), num_classes=1000, classifier_activation="softmax")
    )
    reference = keras.applications.MobileNetV2(weights=None)
    copy_weights(suite, reference)
    probe = images[:4]
    probabilities = {"suite": np.asarray(suite(probe)), "keras": np.asarray(reference(probe))}
    difference = np.abs(probabilities["suite"] - probabilities["keras"]).max()
    agreement = {
        "max_abs_diff_float_probabilities": float(difference),
        "top1": {name: p.argmax(axis=1).tolist() for name, p in probabilities.items()},
        "params": {"suite": suite.count_params(), "keras": reference.count_params()},
    }
    resnet = he_normal_weights(build_backbone("resnet50", (SIZE, SIZE, 3), num_classes=1000))
    models = {}
    for name, model, mode in tqdm(
        [
            ("mobilenet_v2_suite_int8", suite, "int8"),
            ("mobilenet_v2_keras_int8", reference, "int8"),
            ("resnet50_float32", resnet, "float32"),
            ("resnet50_int8", resnet, "int8"),
        ],
        desc="convert",
        file=sys.stderr,
    ):
        models[name] = convert(model, mode, calibration if mode == "int8" else None)
    return models, agreement


def interleaved(models: dict[str, bytes], threads: tuple[int, ...], warmup: int, runs: int) -> list[dict]:
    """Per thread count, each model's p50/p90 ms from runs taken in turn (A, B, A, B, ... or A, B, C, ...).

    ``ratio_of_p50`` is first model / second model; ``paired_ratio`` the median of that
    ratio over the run pairs. ``load_average`` is taken before the thread count's runs.
    """
    rows = []
    for count in threads:
        load_average = list(os.getloadavg())
        runners = {name: TFLiteModel(data, num_threads=count) for name, data in models.items()}
        inputs = {name: random_input(runner) for name, runner in runners.items()}
        for name, runner in runners.items():
            latencies_ms(runner, inputs[name], warmup)
        times = {name: np.empty(runs) for name in models}
        for i in tqdm(range(runs), desc=f"{' vs '.join(models)} x{count}", file=sys.stderr, leave=False):
            for name, runner in runners.items():
                times[name][i] = latencies_ms(runner, inputs[name], 1)[0]
        first, second = list(times.values())[:2]
        rows.append(
            {
                "threads": count,
                "load_average": load_average,
                **{
                    name: {"p50_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90))}
                    for name, t in times.items()
                },
                "ratio_of_p50": float(np.median(first) / np.median(second)),
                "paired_ratio": float(np.median(first / second)),
            }
        )
    return rows


def single_op_models(data: bytes) -> list[tuple[str, bytes]]:
    """Every op of subgraph 0 as a model of its own: ``(kind, flatbuffer)``.

    Constant inputs keep their data; the other inputs become the model's inputs. ``kind``
    is the op type, with the kernel size for convolutions (e.g. ``CONV_2D 3x3``).
    """
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    subgraph = model.subgraphs[0]
    singles = []
    for op in subgraph.operators:
        used = list(dict.fromkeys(i for i in [*op.inputs, *op.outputs] if i >= 0))
        tensors, buffers, inputs = [], [schema.BufferT()], []
        for index in used:
            tensor = copy.copy(subgraph.tensors[index])
            content = model.buffers[tensor.buffer].data
            buffers.append(schema.BufferT(data=content))
            tensor.buffer = len(buffers) - 1
            if content is None and index in op.inputs:
                inputs.append(used.index(index))
            tensors.append(tensor)
        single_op = copy.copy(op)
        single_op.inputs = [used.index(i) if i >= 0 else -1 for i in op.inputs]
        single_op.outputs = [used.index(i) for i in op.outputs]
        single_op.opcodeIndex = 0
        part = schema.SubGraphT()
        part.tensors, part.operators, part.inputs, part.outputs = tensors, [single_op], inputs, single_op.outputs
        single = schema.ModelT()
        single.version, single.buffers, single.subgraphs = 3, buffers, [part]
        single.operatorCodes = [model.operatorCodes[op.opcodeIndex]]
        builder = flatbuffers.Builder(1024)
        builder.Finish(single.Pack(builder), file_identifier=FILE_IDENTIFIER)
        code = model.operatorCodes[op.opcodeIndex]
        kind = _OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            kh, kw = subgraph.tensors[op.inputs[1]].shape[1:3]
            kind = f"{kind} {kh}x{kw}"
        singles.append((kind, bytes(builder.Output())))
    return singles


def where_time_goes(data: bytes, warmup: int, runs: int) -> dict:
    """Each op timed alone on 1 thread (p50), summed by kind, against the whole model's p50."""
    by_kind: dict[str, dict] = defaultdict(lambda: {"ops": 0, "ms": 0.0, "macs": 0})
    for kind, single in tqdm(single_op_models(data), desc="ops", file=sys.stderr, leave=False):
        interpreter = Interpreter(model_content=single, num_threads=1)
        interpreter.allocate_tensors()
        rng = np.random.default_rng(0)
        for detail in interpreter.get_input_details():
            info = np.iinfo(detail["dtype"]) if np.dtype(detail["dtype"]).kind in "iu" else None
            value = (
                rng.integers(info.min, info.max, detail["shape"], endpoint=True)
                if info
                else rng.standard_normal(detail["shape"])
            )
            interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]))
        times = np.empty(warmup + runs)
        for i in range(len(times)):
            start = time.perf_counter()
            interpreter.invoke()
            times[i] = (time.perf_counter() - start) * 1e3
        entry = by_kind[kind]
        entry["ops"] += 1
        entry["ms"] += float(np.median(times[warmup:]))
        entry["macs"] += count_macs(single)
    whole = benchmark(data, threads=(1,), warmup=warmup, runs=runs)["results"][0]["p50_ms"]
    kinds = sorted(by_kind.items(), key=lambda item: -item[1]["ms"])
    return {
        "whole_model_p50_ms": whole,
        "sum_of_ops_ms": sum(e["ms"] for _, e in kinds),
        "weights": weight_quantization(data),
        "by_kind": [
            {
                "kind": kind,
                **entry,
                "share_of_ops_time": entry["ms"] / sum(e["ms"] for _, e in kinds),
                "gmacs_per_s": entry["macs"] / entry["ms"] / 1e6 if entry["macs"] else None,
            }
            for kind, entry in kinds
        ],
    }


def stem_channel_sweep(warmup: int, runs: int) -> list[dict]:
    """A stem-sized int8 7x7 conv (112x112 grid, 64 filters) timed per input channel count on 1 thread.

    If the time barely grows with the channels, the kernel pads each tap's channels, and
    an RGB stem (3 channels) pays for many more MACs than it has.
    """
    rows = []
    for channels in STEM_INPUT_CHANNELS:
        shape = ConvShape(height=112, width=112, in_channels=channels, out_channels=64, kernel=7)
        row = benchmark(conv_model(shape, "int8"), warmup=warmup, runs=runs, macs=shape.macs)["results"][0]
        rows.append({"in_channels": channels, "p50_ms": row["p50_ms"], "gmacs_per_s": row["gmacs_per_s"]})
    return rows


def weight_quantization(data: bytes) -> dict[str, int]:
    """How many conv/fc weight tensors are quantized per channel and per tensor."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    subgraph = model.subgraphs[0]
    counts = {"per_channel": 0, "per_tensor": 0}
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if _OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode)) in (
            "CONV_2D",
            "DEPTHWISE_CONV_2D",
            "FULLY_CONNECTED",
        ):
            quantization = subgraph.tensors[op.inputs[1]].quantization
            scales = 0 if quantization is None or quantization.scale is None else len(quantization.scale)
            counts["per_channel" if scales > 1 else "per_tensor"] += 1
    return counts


def measure(threads: tuple[int, ...], warmup: int, runs: int, calibration_images: int) -> dict:
    """Convert, time and break down the models (sections 1-4 of the module docstring); the JSON result."""
    start = time.perf_counter()
    machine = machine_info()
    models, agreement = convert_models(calibration_images)
    mobilenet = interleaved(
        {"suite": models["mobilenet_v2_suite_int8"], "keras": models["mobilenet_v2_keras_int8"]}, threads, warmup, runs
    )
    resnet = interleaved(
        {"float32": models["resnet50_float32"], "int8": models["resnet50_int8"]},
        threads,
        warmup=max(2, warmup // 5),
        runs=max(10, runs // 3),
    )
    int8_models = ("resnet50_int8", "mobilenet_v2_suite_int8")
    peak = {name: add_peak(benchmark(models[name], threads=threads, warmup=warmup, runs=runs)) for name in int8_models}
    breakdown = {
        name: where_time_goes(models[name], warmup, runs)
        for name in tqdm(int8_models, desc="where time goes", file=sys.stderr)
    }
    breakdown["stem_input_channel_sweep"] = stem_channel_sweep(warmup, runs)
    speedup_row = next((row for row in resnet if row["threads"] == SPEEDUP_THREADS), resnet[-1])
    targets = {
        "mobilenet_v2_suite_over_keras": _target(max(row["ratio_of_p50"] for row in mobilenet), 1.05, at_most=True),
        "resnet50_int8_speedup": {**_target(speedup_row["ratio_of_p50"], 3.0), "threads": speedup_row["threads"]},
        "resnet50_int8_peak_ratio": _target(min(r["peak_ratio"] for r in peak["resnet50_int8"]["results"]), 0.65),
        "mobilenet_v2_int8_peak_ratio": _target(
            min(r["peak_ratio"] for r in peak["mobilenet_v2_suite_int8"]["results"]), 0.35
        ),
    }
    return {
        "machine": machine,
        "load_average_end": list(os.getloadavg()),
        "settings": {
            "threads": list(threads),
            "warmup": warmup,
            "runs": runs,
            "calibration_images": calibration_images,
            "input_size": SIZE,
            "resnet50_runs": max(10, runs // 3),
        },
        "targets": targets,
        "mobilenet_v2": {
            "same_function": agreement,
            "latency": mobilenet,
            "ops": {name: op_summary(audit_ops(models[f"mobilenet_v2_{name}_int8"])) for name in ("suite", "keras")},
        },
        "resnet50": {"latency": resnet},
        "peak": peak,
        "where_time_goes": breakdown,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _target(measured: float, target: float, at_most: bool = False) -> dict:
    """A target with its measured value; ratios over all thread counts take the worst one."""
    return {"target": target, "measured": measured, "met": measured <= target if at_most else measured >= target}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default: 1,2)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs per model first (default: 10)")
    parser.add_argument(
        "--runs",
        type=int,
        default=100,
        help="timed runs per model and thread count (ResNet-50 float vs int8: a third; default: 100)",
    )
    parser.add_argument("--calibration", type=int, default=32, help="calibration images (default: 32)")
    parser.add_argument(
        "--deny-amx",
        action="store_true",
        help="refuse this process AMX, so int8 runs on the AVX512-VNNI kernels (Linux x86-64)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="JSON output file (default: benchmarks/results/edge_latency.json, "
        "edge_latency_no_amx.json with --deny-amx)",
    )
    args = parser.parse_args()
    if args.deny_amx:
        deny_amx()
    out = args.out or f"benchmarks/results/edge_latency{'_no_amx' if args.deny_amx else ''}.json"
    threads = tuple(int(t) for t in args.threads.split(","))
    result = {"amx_denied": args.deny_amx, **measure(threads, args.warmup, args.runs, args.calibration)}
    write_atomic(out, json.dumps(result, indent=2).encode())
    print(json.dumps({"targets": result["targets"], "load_average": result["machine"]["load_average"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
