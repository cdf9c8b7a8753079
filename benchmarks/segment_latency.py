"""Int8 and float32 TFLite latency of the segment app's segmenters and of their backbones alone (JSON out).

Models (batch 1, ``--size`` 512 px, ``--num-classes`` 19 = Cityscapes' train ids by default), each
built by :func:`apps.segment.models.build_segmenter` from a preset of :data:`apps.segment.config.PRESETS`
with the backbone swapped in:

* ``ffnet_mobile_mobilenet_v2``, ``ffnet_mobile_resnet18``: the FFNet-style up-head of the
  ``ffnet_mobile`` preset (FFNet's mobile head ``B``, nearest upsampling, output stride 4);
* ``lraspp_mobilenet_v2``: the ``lraspp_mobilenet_v2`` preset (LR-ASPP, output stride 8), the head
  people compare against.

Each segmenter is exported as the app ships it (:func:`apps.segment.models.with_probabilities`:
logits resized to the input, then the softmax ``masks``) by
:func:`vision_core.export.tflite_export.export_tflite`, float32 and post-training int8 (uint8 input and
output, calibrated on ``--calibration`` demo scenes, :func:`vision_core.data.synthetic.segmentation_scene`);
its backbone alone (:func:`vision_core.backbones.build_backbone`, the same input, outputs ``C2..C5``)
and the segmenter up to its logits at the output stride (no resize to the input, no softmax: ``logits``)
by :func:`vision_core.quant.convert.convert`, the same two ways. Every int8 file passes the all-int8
op audit (:func:`tflite.audit.require_int8`; its op summary goes in the JSON).

Per model, dtype and thread count the three files are timed in turn, run by run
(:func:`edge_latency.interleaved`: fresh XNNPACK interpreters, warm-up runs, then A/B/C/A/B/C on one
fixed random input each, so drift hits all alike): p50 and p90 ms. From the p50s: the head's share of
the time ``(segmenter - backbone) / segmenter`` (the head: everything after ``C2..C5``), the part of it
the resize to the input and the softmax take, ``(segmenter - logits) / segmenter``, the head's share of
the MACs, and int8's speed-up ``float32 / int8`` of the segmenter and of the backbone. With
``--op-breakdown``, each segmenter's ops are also timed one by one on 1 thread and summed by kind
(:func:`edge_latency.where_time_goes`), which names the ops behind the shares.

Weights are random (nothing is downloaded); the latency of these ops does not depend on them. Machine
info (CPU model, int8 dot-product flags, load average before and after, versions, git state) goes in
the JSON; on a shared CPU every number is an upper bound.

    python benchmarks/segment_latency.py [--models ffnet_mobile_mobilenet_v2,ffnet_mobile_resnet18]
        [--size 512] [--num-classes 19] [--threads 1,2] [--runs 20] [--warmup 3] [--calibration 4]
        [--op-breakdown]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from edge_latency import interleaved, where_time_goes
from machine import machine_info
from tqdm import tqdm

from apps.segment.config import PRESETS
from apps.segment.models import backbone_spec, build_segmenter, with_probabilities
from apps.segment.task import MEAN, STD
from tflite.audit import op_summary, require_int8
from tflite.bench import compute_dtype, model_macs
from tflite.metadata import ModelInfo
from vision_core.backbones import build_backbone
from vision_core.backend import keras
from vision_core.data.synthetic import segmentation_scene
from vision_core.export.tflite_export import export_tflite
from vision_core.quant.convert import convert
from vision_core.storage.atomic import write_atomic

# model name -> (preset whose model fields it takes, backbone swapped in)
MODELS = {
    "ffnet_mobile_mobilenet_v2": ("ffnet_mobile", "mobilenet_v2"),
    "ffnet_mobile_resnet18": ("ffnet_mobile", "resnet18"),
    "lraspp_mobilenet_v2": ("lraspp_mobilenet_v2", "mobilenet_v2"),
}
DTYPES = ("float32", "int8")
PARTS = ("segmenter", "backbone", "logits")  # interleaved() reports segmenter / backbone as its ratios


def model_fields(name: str, size: int) -> dict:
    """The :class:`apps.segment.config.ModelConfig` fields of model ``name`` at ``size`` px."""
    preset, backbone = MODELS[name]
    config = dataclasses.replace(PRESETS[preset].model, backbone=backbone, backbone_variant=None, input_size=size)
    return dataclasses.asdict(config)


def calibration_images(size: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` demo scenes (1-4 shapes) at ``size`` px, normalised as the segmenters take them."""
    rng = np.random.default_rng(seed)
    images = np.stack([segmentation_scene(rng, size, int(rng.integers(1, 5)))[0] for _ in range(count)])
    return (images.astype(np.float32) - MEAN) / STD


def convert_segmenter(fields: dict, num_classes: int, mode: str, calibration: np.ndarray) -> tuple[bytes, int]:
    """``(tflite bytes, Keras params)`` of the shipped segmenter, exported as ``python -m apps.segment export`` does."""
    model = with_probabilities(build_segmenter(num_classes, **fields))
    info = ModelInfo(
        "segmentation",
        model.name,
        [f"class{i}" for i in range(num_classes)],
        mean=[MEAN],
        std=[STD],
        activation="none",
    )
    data = [calibration[i : i + 1] for i in range(len(calibration))] if mode == "int8" else None
    with tempfile.TemporaryDirectory(prefix="segment_latency_") as tmp:
        path = export_tflite(model, Path(tmp) / f"{mode}.tflite", mode, data, info=info)
        return path.read_bytes(), int(model.count_params())


def convert_part(fields: dict, num_classes: int, part: str, mode: str, calibration: np.ndarray) -> tuple[bytes, int]:
    """``(tflite bytes, Keras params)`` of the segmenter's ``backbone`` alone (outputs ``C2..C5``) or the segmenter
    up to its ``logits`` at the output stride (the input of the resize layer ``logits``); uint8 in/out in int8."""
    if part == "backbone":
        name, shape, options = backbone_spec(fields)
        model = build_backbone(name, shape, **options)
    else:
        segmenter = build_segmenter(num_classes, **fields)
        model = keras.Model(segmenter.input, segmenter.get_layer("logits").input, name=f"{segmenter.name}_logits")
    data = [calibration[i : i + 1] for i in range(len(calibration))] if mode == "int8" else None
    return convert(model, mode, data, io_dtype="uint8" if mode == "int8" else None), int(model.count_params())


def describe_file(data: bytes, params: int, source: str) -> dict:
    """Size, MACs, compute dtype and (int8) the op audit of one converted file."""
    dtype = compute_dtype(data)
    macs = model_macs(data)
    info = {
        "params": params,
        "file_bytes": len(data),
        "file_mb": round(len(data) / 2**20, 2),
        "macs": macs,
        "gmacs": round(macs / 1e9, 3),
        "compute_dtype": dtype,
    }
    if dtype == "int8":
        records = require_int8(data, source=source)
        info["audit"] = {"all_int8": True, "ops": len(records), "op_summary": op_summary(records)}
    return info


def share(whole: float, part: float) -> float:
    """What ``whole`` spends beyond ``part``, as a fraction of ``whole``: ``(whole - part) / whole``."""
    if whole <= 0:
        raise ValueError(f"the whole must be positive, got {whole}")
    return (whole - part) / whole


def summarize(files: dict[str, dict], latency: dict[str, list[dict]]) -> dict[str, dict]:
    """Per thread count: p50/p90 ms of each part and dtype, the head's share of time and MACs, int8's speed-up.

    ``files``: ``{"<part>_<dtype>": describe_file(...)}``; ``latency``: ``{dtype: rows of interleaved()}``
    over :data:`PARTS` (its ``paired_ratio``: segmenter / backbone). Keys are thread counts as strings.
    """
    rows = {dtype: {row["threads"]: row for row in latency[dtype]} for dtype in DTYPES}
    head_macs = share(files["segmenter_int8"]["macs"], files["backbone_int8"]["macs"])
    result = {}
    for threads in sorted(rows["int8"].keys() & rows["float32"].keys()):
        p50 = {(part, dtype): rows[dtype][threads][part]["p50_ms"] for part in PARTS for dtype in DTYPES}
        entry = {
            f"{part}_{dtype}_{key}": rows[dtype][threads][part][key]
            for dtype in DTYPES
            for part in PARTS
            for key in ("p50_ms", "p90_ms")
        }
        for dtype in DTYPES:
            entry[f"head_share_{dtype}"] = share(p50["segmenter", dtype], p50["backbone", dtype])
            entry[f"head_share_{dtype}_paired"] = share(rows[dtype][threads]["paired_ratio"], 1.0)
            entry[f"resize_softmax_share_{dtype}"] = share(p50["segmenter", dtype], p50["logits", dtype])
        entry["head_share_of_macs"] = head_macs
        for part in ("segmenter", "backbone"):
            entry[f"int8_speedup_{part}"] = p50[part, "float32"] / p50[part, "int8"]
        result[str(threads)] = entry
    return result


def measure(
    models: tuple[str, ...],
    size: int,
    num_classes: int,
    threads: tuple[int, ...],
    warmup: int,
    runs: int,
    calibration_count: int,
    op_breakdown: bool = False,
) -> dict:
    """Convert every file first (each backbone once), then time each model's parts; the JSON result."""
    start = time.perf_counter()
    machine = machine_info()
    calibration = calibration_images(size, calibration_count)
    jobs = [(name, part, dtype) for name in models for part in PARTS for dtype in DTYPES]
    files: dict[tuple[str, str, str], bytes] = {}
    report: dict[str, dict] = {
        name: {"preset": MODELS[name][0], "model_fields": model_fields(name, size), "files": {}} for name in models
    }
    backbones: dict[tuple[str, str], tuple[bytes, dict]] = {}  # two models on one backbone share its files
    for name, part, dtype in tqdm(jobs, desc="convert", file=sys.stderr):
        fields = report[name]["model_fields"]
        if part == "backbone" and (fields["backbone"], dtype) in backbones:
            data, info = backbones[fields["backbone"], dtype]
        else:
            began = time.perf_counter()
            if part == "segmenter":
                data, params = convert_segmenter(fields, num_classes, dtype, calibration)
            else:
                data, params = convert_part(fields, num_classes, part, dtype, calibration)
            info = describe_file(data, params, f"{name} {part} ({dtype})")
            info["convert_seconds"] = round(time.perf_counter() - began, 1)
            if part == "backbone":
                backbones[fields["backbone"], dtype] = data, info
            keras.backend.clear_session()
            gc.collect()
        files[name, part, dtype] = data
        report[name]["files"][f"{part}_{dtype}"] = info
    for name in tqdm(models, desc="time", file=sys.stderr):
        latency = {
            dtype: interleaved({part: files[name, part, dtype] for part in PARTS}, threads, warmup, runs)
            for dtype in DTYPES
        }
        report[name]["latency"] = latency
        report[name]["summary"] = summarize(report[name]["files"], latency)
        if op_breakdown:
            report[name]["op_breakdown_1_thread"] = {
                dtype: where_time_goes(files[name, "segmenter", dtype], warmup, runs) for dtype in DTYPES
            }
    return {
        "machine": machine,
        "load_average_end": list(os.getloadavg()),
        "note": (
            "Random weights. The head is everything after C2..C5: the up-head, then the resize to the input "
            "and the softmax (resize_softmax_share). "
            "machine.load_average and load_average_end tell whether other jobs shared the CPU."
        ),
        "settings": {
            "models": list(models),
            "input_size": size,
            "num_classes": num_classes,
            "threads": list(threads),
            "warmup": warmup,
            "runs": runs,
            "calibration_images": calibration_count,
            "op_breakdown": op_breakdown,
            "batch": 1,
            "int8_io_dtype": "uint8",
        },
        "models": report,
        "seconds": round(time.perf_counter() - start, 1),
    }


def table(result: dict) -> str:
    """The result as a Markdown table: one row per model and thread count."""
    lines = [
        "| model | threads | int8 segmenter p50 / p90 ms | int8 backbone p50 / p90 ms | head share int8 (resize + "
        "softmax) | float32 segmenter / backbone p50 ms | head share float32 | int8 speed-up segmenter / backbone "
        "| head share of MACs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, model in result["models"].items():
        for threads, s in model["summary"].items():
            lines.append(
                f"| {name} | {threads} | {s['segmenter_int8_p50_ms']:.1f} / {s['segmenter_int8_p90_ms']:.1f} | "
                f"{s['backbone_int8_p50_ms']:.1f} / {s['backbone_int8_p90_ms']:.1f} | {s['head_share_int8']:.0%} "
                f"({s['resize_softmax_share_int8']:.0%}) | {s['segmenter_float32_p50_ms']:.1f} / "
                f"{s['backbone_float32_p50_ms']:.1f} | {s['head_share_float32']:.0%} | "
                f"{s['int8_speedup_segmenter']:.2f}x / {s['int8_speedup_backbone']:.2f}x | "
                f"{s['head_share_of_macs']:.0%} |"
            )
    return "\n".join(lines)


def breakdown_table(result: dict, kinds: int = 4) -> str:
    """The ``--op-breakdown`` of each segmenter as a Markdown table: the ``kinds`` op kinds taking most time."""
    lines = ["| model | dtype | whole p50 ms (1 thread) | op kinds taking most time (ms alone) |", "|---|---|---|---|"]
    for name, model in result["models"].items():
        for dtype, breakdown in model.get("op_breakdown_1_thread", {}).items():
            top = ", ".join(f"{k['kind']} x{k['ops']} {k['ms']:.1f}" for k in breakdown["by_kind"][:kinds])
            lines.append(f"| {name} | {dtype} | {breakdown['whole_model_p50_ms']:.1f} | {top} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Writes --out atomically; progress goes to stderr, a Markdown table to stdout.",
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated models to measure, any of {', '.join(MODELS)} (default: all)",
    )
    parser.add_argument("--size", type=int, default=512, help="square input side, a multiple of 32 (default: 512)")
    parser.add_argument("--num-classes", type=int, default=19, help="classes (default: 19, Cityscapes' train ids)")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default: 1,2)")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed runs per model, dtype and thread count (default: 3)"
    )
    parser.add_argument(
        "--runs", type=int, default=20, help="timed runs per model, dtype and thread count (default: 20)"
    )
    parser.add_argument("--calibration", type=int, default=4, help="demo scenes used to calibrate int8 (default: 4)")
    parser.add_argument(
        "--op-breakdown",
        action="store_true",
        help="also time each segmenter's ops one by one on 1 thread, summed by op kind (default: off)",
    )
    parser.add_argument(
        "--out",
        default="benchmarks/results/segment_latency.json",
        help="JSON output file (default: benchmarks/results/segment_latency.json)",
    )
    parser.add_argument(
        "--table", action="store_true", help="print the results already in --out as a Markdown table and exit"
    )
    args = parser.parse_args()
    if args.table:
        if not Path(args.out).is_file():
            parser.error(f"{args.out}: no results to show")
        result = json.loads(Path(args.out).read_text())
        print(table(result) + ("\n\n" + breakdown_table(result) if result["settings"]["op_breakdown"] else ""))
        return 0
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    threads = tuple(int(t) for t in args.threads.split(","))
    if args.runs < 1 or args.warmup < 0 or args.calibration < 1 or args.num_classes < 2 or min(threads) < 1:
        parser.error("need --runs >= 1, --warmup >= 0, --calibration >= 1, --num-classes >= 2, threads >= 1")
    if args.size < 32 or args.size % 32:
        parser.error(f"--size must be a positive multiple of 32 (the backbones' C5 stride), got {args.size}")
    result = measure(
        models, args.size, args.num_classes, threads, args.warmup, args.runs, args.calibration, args.op_breakdown
    )
    write_atomic(args.out, json.dumps(result, indent=2).encode())
    print(table(result) + ("\n\n" + breakdown_table(result) if args.op_breakdown else ""), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
