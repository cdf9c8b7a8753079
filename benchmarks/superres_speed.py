"""Speed of the superres app's shipped ESPCN against the machine's int8 peak convolution (JSON out).

The issue's target: the x3 Y model, 640x360 in, 1920x1080 out, int8, batch 1, 2 threads, at >= 60 %
of the int8 peak convolution measured in the same run (:mod:`tflite.peak`). The script:

1. takes a trained run (``--run``; its weights and config) or, without one, the ``--preset``'s model
   with random weights (speed does not depend on the weights) and the demo images for calibration;
2. writes the float32 and int8 TFLite files at ``--size`` through the app's own export
   (:meth:`apps.superres.task.SuperResTask.export`: uint8 in and out, audited all-int8);
3. times both with :func:`tflite.bench.benchmark` and puts the peak conv of the same dtype beside each
   row (:func:`tflite.peak.add_peak`: ``peak_ratio`` is the share of the peak), both counting the float
   graph's multiply-adds (the int8 file's space-to-depth first layer also multiplies zeros);
4. runs the video ``predict`` path (decode + model + colour + encode) on ``--frames`` generated
   frames at ``--size`` with the int8 file: end-to-end and model-alone frames per second.

The JSON (``--out``, default ``benchmarks/results/superres_speed.json``) records the machine (CPU
model, int8 dot-product flags, load average). On a shared CPU every number is an upper bound of the
time (a lower bound of the speed).

    python benchmarks/superres_speed.py [--run runs/superres/NAME] [--preset espcn_x3_y]
        [--size 360 640] [--threads 2] [--runs 30] [--warmup 5] [--frames 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import cv2
from machine import machine_info

from apps.superres.config import PRESETS
from apps.superres.task import SuperResTask
from tflite.audit import audit_ops
from tflite.bench import benchmark, model_macs
from tflite.peak import add_peak
from vision_core.app import runs
from vision_core.app.config import apply_overrides, load_yaml
from vision_core.data.superres.demo import demo_image
from vision_core.storage.atomic import write_atomic
from vision_core.storage.weights import assign_by_path, load_npz
from vision_core.superres.predict import predict_sources
from vision_core.superres.runners import load_sr_runner


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="a trained run folder (default: random weights)")
    parser.add_argument("--preset", default="espcn_x3_y", choices=list(PRESETS), help="model without --run")
    parser.add_argument("--size", type=int, nargs=2, default=(360, 640), metavar=("H", "W"), help="input size")
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="thread counts (default: 2)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs (default: 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: 5)")
    parser.add_argument("--frames", type=int, default=60, help="frames of the generated video (default: 60)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/superres_speed.json"))
    return parser.parse_args(argv)


def write_video(path: Path, frames: int, height: int, width: int) -> Path:
    """``frames`` generated frames (a demo image panned by a pixel per frame) as an MJPG AVI."""
    side = -(-max(height, width) // 12) * 12 + 12
    scene = demo_image(side, (7, 0))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    for index in range(frames):
        shift = index % (side - width)
        writer.write(cv2.cvtColor(scene[:height, shift : shift + width], cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    task = SuperResTask()
    if args.run is not None:
        run_dir = runs.existing_run(args.run)
        config = apply_overrides(PRESETS[args.preset], load_yaml(run_dir / "config.yaml"), "config.yaml")
    else:
        run_dir, config = None, dataclasses.replace(PRESETS[args.preset])
    config.model.export_size = tuple(args.size)
    model = task.build_model(config)
    if run_dir is not None:
        assign_by_path(model, load_npz(run_dir / "weights" / "best.weights.npz"))
    start_info = machine_info()
    with tempfile.TemporaryDirectory(prefix="superres_speed_") as tmp:
        work = Path(run_dir) if run_dir is not None else Path(tmp) / "run"
        written = task.export(model, config, work, ["float32", "int8"], saved_models=Path(tmp) / "saved_models")
        rows = {}
        # the float32 graph's MACs are the model's work (int8 block convolutions multiply zeros too)
        macs = model_macs(Path(written["float32"]).read_bytes())
        for form in ("int8", "float32"):
            report = benchmark(
                written[form], threads=tuple(args.threads), warmup=args.warmup, runs=args.runs, macs=macs
            )
            rows[form] = add_peak(report)
        int8_ops = [record.op for record in audit_ops(Path(written["int8"]).read_bytes())]
        video = write_video(Path(tmp) / "clip.avi", args.frames, *args.size)
        runner = load_sr_runner(written["int8"], num_threads=max(args.threads))
        predicted = predict_sources(runner, [video], Path(tmp) / "predict", config.model.colour)
    target = next(r for r in rows["int8"]["results"] if r["threads"] == max(args.threads))
    result = {
        "model": {"preset": args.preset, "run": str(run_dir) if run_dir else None, **dataclasses.asdict(config.model)},
        "input_size": list(args.size),
        "output_size": [args.size[0] * config.model.scale, args.size[1] * config.model.scale],
        "machine": start_info,
        "load_average_end": machine_info()["load_average"],
        "int8_ops": int8_ops,
        "tflite": rows,
        "int8_share_of_peak": target["peak_ratio"],
        "int8_fps": target["fps"],
        "video_predict": predicted["results"][0],
    }
    write_atomic(args.out, json.dumps(result, indent=2, default=str).encode())
    print(json.dumps({k: result[k] for k in ("int8_share_of_peak", "int8_fps", "video_predict")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
