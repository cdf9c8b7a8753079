"""Int8 TFLite latency of the detect app's detectors, side by side in one run (JSON out).

Models (presets of :data:`apps.detect.config.PRESETS`, batch 1, ``--num-classes`` classes,
80 = COCO by default):

* ``ssdlite_mobilenet_v2``: SSDLite-MobileNetV2 at 320x320;
* ``retinanet_resnet50_rcnet``: RetinaNet-ResNet-50 with the RCNet neck at 512x512;
* ``retinanet_resnet50_fpn``: RetinaNet-ResNet-50 with the FPN neck at 512x512.

Each model is built with :func:`apps.detect.models.build_detector` from its preset's model
fields, followed by the ``TFLite_Detection_PostProcess`` tail
(:func:`apps.detect.task.with_postprocess_op`), converted full-int8 with a uint8 input and float32
outputs (:func:`vision_core.detection.export_tail.convert_detector`), calibrated on a few demo
scenes (:func:`vision_core.data.detection.demo.draw_detection_scene`, ``x / 127.5 - 1``), and
audited: every op int8 but the post-process op and the DEQUANTIZE ops feeding it
(:func:`tflite.audit.require_int8`). All models are converted first, then timed one after the
other with :func:`tflite.bench.benchmark` (fresh interpreter per thread count, XNNPACK,
warm-up runs, then timed runs on one fixed random uint8 input).

Per model the JSON holds Keras params, anchors, MACs (conv/fc ops counted by the edge kit),
file size, op summary, p50/p90/mean ms and FPS per thread count, and the number of
detections the post-process op returned on the timed input. ``rcnet_vs_fpn`` compares the
two RetinaNets: params ratio and difference, MACs ratio, latency ratio at 2 threads.

Weights are random (nothing is downloaded): the backbones' latency does not depend on them,
but the post-process op's does (its NMS work grows with the boxes scoring above the score
threshold, and random-weight heads with the RetinaNet prior score almost none), so the op's
share is a lower bound of a trained model's. Machine info (CPU, cores, load average at start
and end, versions, git state) goes in the JSON; on a shared CPU every number is rough.

    python benchmarks/detect_latency.py [--models ssdlite_mobilenet_v2,retinanet_resnet50_fpn]
        [--num-classes 80] [--threads 1,2] [--runs 50] [--warmup 5] [--calibration 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from machine import machine_info

from apps.detect.config import PRESETS
from apps.detect.models import build_detector, detector_anchors
from apps.detect.task import postprocess_config, with_postprocess_op
from tflite.audit import op_summary, require_int8
from tflite.bench import benchmark, random_input
from tflite.runtime import TFLiteModel
from vision_core.backend import keras
from vision_core.data.detection.demo import draw_detection_scene
from vision_core.detection.export_tail import convert_detector
from vision_core.storage.atomic import write_atomic

MODELS = ("ssdlite_mobilenet_v2", "retinanet_resnet50_rcnet", "retinanet_resnet50_fpn")
COMPARE_THREADS = 2


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def calibration_images(size: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` demo scenes at ``size`` x ``size``, preprocessed as the detectors take them (``x / 127.5 - 1``)."""
    rng = np.random.default_rng(seed)
    images = np.stack([draw_detection_scene(rng, size)[0] for _ in range(count)]).astype(np.float32)
    return images / 127.5 - 1.0


def convert_model(preset: str, num_classes: int, calibration: int) -> tuple[bytes, dict]:
    """The audited int8 TFLite bytes of one preset's detector and what is known of it before timing."""
    config = PRESETS[preset]
    fields = dataclasses.asdict(config.model)
    start = time.perf_counter()
    detector = build_detector(num_classes, **fields)
    params = int(detector.count_params())
    anchors = int(len(detector_anchors(config.model)))
    wrapped = with_postprocess_op(
        detector, model_config=fields, postprocess=dataclasses.asdict(postprocess_config(config, num_classes))
    )
    images = calibration_images(config.model.input_size, calibration)
    built = time.perf_counter()
    data = convert_detector(wrapped, "int8", [images[i : i + 1] for i in range(len(images))], input_dtype="uint8")
    converted = time.perf_counter()
    records = require_int8(data, source=preset)
    float_ops = sorted({r.op for r in records if r.is_float})
    info = {
        "preset": preset,
        "model_fields": fields,
        "name": detector.name,
        "input_size": config.model.input_size,
        "num_classes": num_classes,
        "params": params,
        "anchors": anchors,
        "postprocess": dataclasses.asdict(wrapped.get_layer("postprocess").config),
        "file_bytes": len(data),
        "file_mb": round(len(data) / 2**20, 2),
        "audit": {
            "all_int8_except_postprocess": True,
            "ops": len(records),
            "float_ops_allowed": float_ops,
            "op_summary": op_summary(records),
        },
        "seconds": {"build": round(built - start, 1), "convert": round(converted - built, 1)},
    }
    del detector, wrapped
    keras.backend.clear_session()
    gc.collect()
    return data, info


def detections_on_timed_input(data: bytes) -> int:
    """``num_detections`` the model returns on the input :func:`tflite.bench.benchmark` times."""
    runner = TFLiteModel(data, num_threads=1)
    outputs = runner.run_raw(random_input(runner))
    return int(np.asarray(outputs["num_detections"]).reshape(-1)[0])


def timing(data: bytes, threads: tuple[int, ...], warmup: int, runs: int) -> dict:
    """:func:`tflite.bench.benchmark` of one model, results keyed by thread count."""
    report = benchmark(data, threads=threads, warmup=warmup, runs=runs)
    return {
        "compute_dtype": report["compute_dtype"],
        "input": report["input"],
        "macs": report["macs"],
        "gmacs": round(report["macs"] / 1e9, 3) if report["macs"] else None,
        "load_average": report["load_average"],
        "latency": {
            str(row["threads"]): {key: row[key] for key in ("p50_ms", "p90_ms", "mean_ms", "fps", "gmacs_per_s")}
            for row in report["results"]
        },
    }


def rcnet_vs_fpn(models: dict) -> dict | None:
    """RCNet / FPN: params, MACs and latency (p50 at :data:`COMPARE_THREADS` threads, else the most threads)."""
    if not {"retinanet_resnet50_rcnet", "retinanet_resnet50_fpn"} <= models.keys():
        return None
    rcnet, fpn = models["retinanet_resnet50_rcnet"], models["retinanet_resnet50_fpn"]
    threads = str(COMPARE_THREADS) if str(COMPARE_THREADS) in fpn["latency"] else max(fpn["latency"], key=int)
    latency = rcnet["latency"][threads]["p50_ms"] / fpn["latency"][threads]["p50_ms"]
    return {
        "params_rcnet": rcnet["params"],
        "params_fpn": fpn["params"],
        "params_ratio": rcnet["params"] / fpn["params"],
        "params_difference": rcnet["params"] - fpn["params"],
        "macs_ratio": rcnet["macs"] / fpn["macs"] if rcnet["macs"] and fpn["macs"] else None,
        "file_bytes_ratio": rcnet["file_bytes"] / fpn["file_bytes"],
        "threads": int(threads),
        "p50_ms_rcnet": rcnet["latency"][threads]["p50_ms"],
        "p50_ms_fpn": fpn["latency"][threads]["p50_ms"],
        "latency_ratio_p50": latency,
    }


def measure(
    models: tuple[str, ...],
    num_classes: int,
    threads: tuple[int, ...],
    warmup: int,
    runs: int,
    calibration: int,
    save_dir: str | None,
) -> dict:
    start = time.perf_counter()
    machine = machine_info()
    log(f"{machine['logical_cpus']} logical CPUs, load average {machine['load_average']}")
    converted: dict[str, bytes] = {}
    report: dict[str, dict] = {}
    for index, preset in enumerate(models, 1):
        log(f"[{index}/{len(models)}] build + int8 conversion of {preset} ({num_classes} classes)")
        converted[preset], report[preset] = convert_model(preset, num_classes, calibration)
        info = report[preset]
        log(
            f"    {info['params']:,} params, {info['anchors']:,} anchors, {info['file_mb']} MB, audit ok "
            f"(build {info['seconds']['build']} s, convert {info['seconds']['convert']} s)"
        )
        if save_dir:
            path = write_atomic(Path(save_dir) / f"{preset}_int8.tflite", converted[preset])
            info["saved_to"] = str(path)
    for index, preset in enumerate(models, 1):
        log(f"[{index}/{len(models)}] timing {preset}: threads {list(threads)}, {warmup} warm-up + {runs} runs each")
        report[preset].update(timing(converted[preset], threads, warmup, runs))
        report[preset]["num_detections_on_timed_input"] = detections_on_timed_input(converted[preset])
        for count, row in report[preset]["latency"].items():
            log(f"    x{count}: p50 {row['p50_ms']:.1f} ms, p90 {row['p90_ms']:.1f} ms, {row['fps']:.2f} FPS")
    comparison = rcnet_vs_fpn(report)
    if comparison:
        log(
            f"RCNet vs FPN: params x{comparison['params_ratio']:.3f} ({comparison['params_difference']:+,}), "
            f"p50 at {comparison['threads']} threads x{comparison['latency_ratio_p50']:.3f}"
        )
    return {
        "machine": machine,
        "load_average_end": list(os.getloadavg()),
        "note": (
            "Random weights: post-process op work is a lower bound (few boxes above the score threshold). "
            "machine.load_average and load_average_end tell whether other jobs shared the CPU."
        ),
        "settings": {
            "models": list(models),
            "num_classes": num_classes,
            "threads": list(threads),
            "warmup": warmup,
            "runs": runs,
            "calibration_images": calibration,
            "batch": 1,
            "input_dtype": "uint8",
            "output_dtype": "float32",
        },
        "models": report,
        "rcnet_vs_fpn": comparison,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Writes --out atomically; progress goes to stderr, a summary to stdout.",
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated presets to measure, any of {', '.join(MODELS)} (default: all three)",
    )
    parser.add_argument(
        "--num-classes", type=int, default=80, help="object classes, background excluded (default: 80, COCO)"
    )
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default: 1,2)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per model and thread count (default: 5)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model and thread count (default: 50)")
    parser.add_argument("--calibration", type=int, default=8, help="demo scenes used to calibrate int8 (default: 8)")
    parser.add_argument(
        "--save-models",
        metavar="DIR",
        default=None,
        help="also write each <preset>_int8.tflite to DIR (default: not kept)",
    )
    parser.add_argument(
        "--out",
        default="benchmarks/results/detect_latency.json",
        help="JSON output file (default: benchmarks/results/detect_latency.json)",
    )
    args = parser.parse_args()
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    threads = tuple(int(t) for t in args.threads.split(","))
    if args.runs < 1 or args.warmup < 0 or args.calibration < 1 or args.num_classes < 1 or min(threads) < 1:
        parser.error("need --runs >= 1, --warmup >= 0, --calibration >= 1, --num-classes >= 1, threads >= 1")
    result = measure(models, args.num_classes, threads, args.warmup, args.runs, args.calibration, args.save_models)
    path = write_atomic(args.out, json.dumps(result, indent=2).encode())
    summary = {
        name: {
            "params": m["params"],
            "gmacs": m["gmacs"],
            "file_mb": m["file_mb"],
            "p50_ms": {t: round(r["p50_ms"], 1) for t, r in m["latency"].items()},
        }
        for name, m in result["models"].items()
    }
    print(
        json.dumps({"out": str(path), "models": summary, "rcnet_vs_fpn": result["rcnet_vs_fpn"]}, indent=2), flush=True
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
