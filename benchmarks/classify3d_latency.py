"""Latency of one volume through R(2+1)D-18, MC3-18 and R3D-18: float32 and int8 TFLite, 1 and 2 threads (JSON out).

Each network (:mod:`vision_core.backbones.resnet3d`, full width unless ``--width``) is built for volumes of
``--volume-shape`` with random weights (latency does not depend on them), converted to float32 and to int8
TFLite by the suite's :func:`vision_core.quant.convert.convert` (int8 calibrated on random normalised volumes,
int8 input and output, audited all-int8), and timed with :func:`tflite.bench.benchmark` (XNNPACK, batch 1,
``--warmup`` untimed then ``--runs`` timed runs per thread count). Recorded per network: trainable weights,
MACs of the TFLite graph (its CONV_2D and FULLY_CONNECTED ops), the int8 graph's op counts, and p50/p90/mean
ms per form and thread count; with the machine (CPU model, int8 dot-product flags, load average before
and after) in ``benchmarks/results/classify3d_latency.json``.

``--conv3d-reference`` adds R3D-18 built from keras ``Conv3D`` layers on a ``[B, D, H, W, 1]`` input, float32
only (its ``CONV_3D`` has no int8 kernel): what the slice-folded formulation costs, or saves, in float.

    python benchmarks/classify3d_latency.py [--volume-shape 16,64,64] [--width 1.0] [--threads 1,2] [--runs 10]
                                            [--conv3d-reference]
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
from machine import machine_info
from tqdm import tqdm

from tflite.audit import audit_ops
from tflite.bench import benchmark
from tflite.macs import count_macs
from vision_core.backbones.resnet3d import STAGE_CHANNELS, VOLUME_RESNETS, build_volume_resnet
from vision_core.backend import keras
from vision_core.data.classification.nifti import parse_volume_shape
from vision_core.quant.convert import convert
from vision_core.storage.atomic import write_atomic

OUT = Path(__file__).parent / "results" / "classify3d_latency.json"
NUM_CLASSES = 3


def measure(name: str, shape: tuple[int, int, int], width: float, args: argparse.Namespace) -> dict:
    model = build_volume_resnet(name, shape, NUM_CLASSES, width=width)
    depth, height, width_pixels = shape
    rng = np.random.default_rng(0)
    calibration = [
        rng.uniform(-1, 1, (1, height, width_pixels, depth)).astype(np.float32) for _ in range(args.calibration)
    ]
    forms = {"float32": convert(model, "float32"), "int8": convert(model, "int8", calibration, io_dtype="int8")}
    threads = tuple(int(t) for t in args.threads.split(","))
    timings = {form: benchmark(data, threads, args.warmup, args.runs) for form, data in forms.items()}
    for timing in timings.values():
        timing.pop("model")
    return {
        "weights": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "macs": count_macs(forms["int8"]),
        "int8_ops": dict(Counter(record.op for record in audit_ops(forms["int8"]))),
        "forms": timings,
    }


def conv3d_r3d_18(shape: tuple[int, int, int], num_classes: int, width: float):
    """R3D-18 of keras ``Conv3D`` layers (same architecture and weight count as ``build_volume_resnet("r3d_18")``)."""

    def conv_bn(x, filters, kernel, strides, relu=True):
        x = keras.layers.Conv3D(filters, kernel, strides, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        return keras.layers.ReLU()(x) if relu else x

    channels = [max(8, round(c * width)) for c in STAGE_CHANNELS]
    inputs = keras.Input((*shape, 1))
    x = conv_bn(inputs, channels[0], (3, 7, 7), (1, 2, 2))
    for stage, filters in enumerate(channels):
        for block in range(2):
            stride = 2 if stage and not block else 1
            y = conv_bn(conv_bn(x, filters, 3, stride), filters, 3, 1, relu=False)
            if stride > 1:
                x = conv_bn(x, filters, 1, stride, relu=False)
            x = keras.layers.ReLU()(keras.layers.Add()([y, x]))
    x = keras.layers.GlobalAveragePooling3D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name="r3d_18_conv3d")


def measure_conv3d_reference(shape: tuple[int, int, int], width: float, args: argparse.Namespace) -> dict:
    model = conv3d_r3d_18(shape, NUM_CLASSES, width)
    data = convert(model, "float32")
    timing = benchmark(data, tuple(int(t) for t in args.threads.split(",")), args.warmup, args.runs)
    timing.pop("model")
    return {
        "weights": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "ops": dict(Counter(record.op for record in audit_ops(data))),
        "forms": {"float32": timing},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume-shape", default="16,64,64", help="D,H,W of the volume (default: 16,64,64)")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (default: 1.0, the paper's)")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default: 1,2)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per form and thread count (default: 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default: 2)")
    parser.add_argument("--calibration", type=int, default=8, help="int8 calibration volumes (default: 8)")
    parser.add_argument(
        "--conv3d-reference", action="store_true", help="also time R3D-18 of keras Conv3D layers in float32"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON written (default: {OUT})")
    args = parser.parse_args()
    shape = parse_volume_shape(args.volume_shape)
    result = {
        "volume_shape": list(shape),
        "width": args.width,
        "runs": args.runs,
        "warmup": args.warmup,
        "machine": machine_info(),
        "models": {},
    }
    for name in tqdm(VOLUME_RESNETS, desc="networks", unit="network"):
        result["models"][name] = measure(name, shape, args.width, args)
    if args.conv3d_reference:
        result["conv3d_reference"] = measure_conv3d_reference(shape, args.width, args)
    result["load_average_end"] = list(os.getloadavg())
    write_atomic(args.out, json.dumps(result, indent=2).encode())
    print(
        f"{'network':<12} {'weights':>10} {'GMAC':>6}  "
        + "  ".join(f"{f} p50 ms ({t} thr)" for f in ("float32", "int8") for t in args.threads.split(","))
    )
    for name, row in result["models"].items():
        cells = [f"{r['p50_ms']:.1f}" for form in ("float32", "int8") for r in row["forms"][form]["results"]]
        print(f"{name:<12} {row['weights']:>10,} {row['macs'] / 1e9:>6.2f}  " + "  ".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    main()
