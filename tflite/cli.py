"""``python -m tflite run | bench | inspect``: the edge kit's command line.

Every command takes a ``.tflite`` file exported with metadata by the suite (``inspect``
and ``bench`` take any ``.tflite`` with a ``serving_default`` signature). Bad input
(missing file, not a TFLite model, unreadable image, no metadata) exits with status 2
and one ``error:`` line naming the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

from tflite.bench import benchmark
from tflite.draw import draw_prediction
from tflite.errors import EdgeKitError
from tflite.inspect_model import format_report, inspect_model
from tflite.peak import add_peak
from tflite.predict import Predictor, read_image


def _thread_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated thread counts like 1,2,4, got {text!r}") from None
    if min(counts) < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {text!r}")
    return counts


def _describe(name: str, result: dict) -> str:
    labels = result["labels"]
    if result["task"] == "detection":
        rows = [f"  {d['label']} {d['score']:.3f} box=[{', '.join(f'{v:.1f}' for v in d['box'])}]" for d in labels]
        return "\n".join([f"{name}: {len(labels)} detection(s)", *rows])
    unit = "%" if result["task"] == "segmentation" else ""
    scale = 100.0 if unit else 1.0
    return f"{name}: " + ", ".join(f"{d['label']} {d['score'] * scale:.3f}{unit}" for d in labels)


def run(args: argparse.Namespace) -> None:
    predictor = Predictor(args.model, num_threads=args.threads, score_threshold=args.threshold)
    if args.draw:
        args.draw.mkdir(parents=True, exist_ok=True)
    results = []
    for path in args.images:
        image = read_image(path)
        prediction = predictor(image)
        results.append({"image": str(path), **prediction.as_dict(args.top_k)})
        if args.draw:
            out = args.draw / f"{path.stem}.png"
            if not cv2.imwrite(str(out), draw_prediction(image, prediction, args.top_k)):
                raise EdgeKitError(f"{out}: could not write the drawn image")
        if not args.json:
            print(_describe(str(path), results[-1]))
    if args.json:
        print(json.dumps({"model": predictor.source, "task": predictor.info.task, "results": results}))


def bench(args: argparse.Namespace) -> None:
    report = benchmark(args.model, threads=args.threads, warmup=args.warmup, runs=args.runs)
    if not args.no_peak:
        report = add_peak(report)
    print(
        f"{report['model']}: input {report['input']['dtype']}{report['input']['shape']}, "
        f"{report['compute_dtype'] or 'other'} compute, {report['macs'] / 1e6:.2f} M MACs, "
        f"{report['runs']} runs after {report['warmup']} warm-up, load average "
        f"{' '.join(f'{v:.2f}' for v in report['load_average'])}"
    )
    peak = report.get("peak")
    header = f"{'threads':>7} {'p50 ms':>9} {'p90 ms':>9} {'FPS':>9} {'GMAC/s':>8}"
    if peak:
        conv = peak["shape"]
        print(
            f"peak: one {peak['dtype']} CONV_2D {conv['kernel']}x{conv['kernel']}, {conv['height']}x{conv['width']}"
            f"x{conv['in_channels']} -> {conv['out_channels']} channels ({peak['macs'] / 1e9:.2f} G MACs), "
            "timed the same way"
        )
        header += f" {'peak':>8} {'of peak':>8}"
    print(header)
    for row in report["results"]:
        line = (
            f"{row['threads']:>7} {row['p50_ms']:9.3f} {row['p90_ms']:9.3f} {row['fps']:9.1f} "
            f"{_number(row['gmacs_per_s'], '8.2f')}"
        )
        if peak:
            line += f" {_number(row['peak_gmacs_per_s'], '8.2f')} {_number(row['peak_ratio'], '8.1%')}"
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


def _number(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else f"{'-':>8}"


def inspect(args: argparse.Namespace) -> None:
    report = inspect_model(args.model)
    print(json.dumps(report) if args.json else format_report(report))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tflite",
        description="The edge kit: run, benchmark and inspect exported .tflite models.",
        epilog="Needs ai-edge-litert, numpy and OpenCV only (no TensorFlow).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "run",
        help="predict on images",
        description=(
            "Run MODEL on each IMAGE: read with OpenCV, BGR->RGB, stretch to the input size, normalise as the "
            "metadata says (uint8 models take raw pixels), then post-process by task: classification prints "
            "the top-k labels with probabilities; detection the boxes [x_min, y_min, x_max, y_max] in image "
            "pixels with label and score; segmentation the share of pixels per label."
        ),
    )
    p.add_argument("model", type=Path, metavar="MODEL", help=".tflite file exported with metadata")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files (any format OpenCV reads)")
    p.add_argument("--top-k", type=int, default=3, help="labels shown per image (default: 3; detection: all)")
    p.add_argument("--threshold", type=float, default=0.3, help="minimum detection score (default: 0.3)")
    p.add_argument(
        "--draw",
        type=Path,
        metavar="OUT_DIR",
        help="write each image with its prediction drawn to OUT_DIR/<image stem>.png",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object {model, task, results} instead")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads (default: runtime's choice)")
    p.set_defaults(handler=run)

    p = commands.add_parser(
        "bench",
        help="measure latency",
        description=(
            "Time MODEL on a fixed random input: WARMUP untimed runs, then RUNS timed runs per thread count; "
            "prints p50/p90 latency (ms), FPS and the achieved GMAC/s (MACs from the metadata, else counted "
            "from the CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ops). Then times, the same way, one large "
            "CONV_2D in the model's compute dtype (int8 or float32) as this machine's peak GMAC/s and prints "
            "each thread count's share of it."
        ),
    )
    p.add_argument("model", type=Path, metavar="MODEL", help=".tflite file")
    p.add_argument(
        "--threads",
        type=_thread_counts,
        default=(1,),
        metavar="N[,N...]",
        help="thread counts to time, comma-separated (default: 1)",
    )
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default: 10)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per thread count (default: 50)")
    p.add_argument("--no-peak", action="store_true", help="skip the peak convolution")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON to OUT")
    p.set_defaults(handler=bench)

    p = commands.add_parser(
        "inspect",
        help="show inputs, outputs, ops and metadata",
        description=(
            "Show MODEL's inputs and outputs (signature name, shape, dtype, quantization scale and zero point), "
            "the op audit (op type, tensor dtypes, count; float ops an int8 model must not hold), the MAC count "
            "and its metadata (labels, normalisation, task outputs, TFLite Model Metadata)."
        ),
    )
    p.add_argument("model", type=Path, metavar="MODEL", help=".tflite file")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(handler=inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except ValueError as error:  # EdgeKitError and the runtime's own checks; messages name the file
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
