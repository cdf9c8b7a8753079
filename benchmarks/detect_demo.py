"""The detection demo as a newcomer runs it, timed and scored (JSON out).

Runs, each as its own ``python -m apps.detect`` process in a fresh project folder:

1. ``train`` with no config arguments (the ``demo`` preset on the built-in dataset, generated
   afresh in the project folder as on a newcomer's machine), timed wall clock from launch to
   exit, dataset generation included. Targets: <= 20 minutes on
   a 2-core CPU, mAP@.5 >= 0.80 on the demo validation split.
2. ``qat --steps N`` (TF-MOT fine-tune in a tf_keras process -> ``qat/qat_int8.tflite``).
3. ``export --format tflite int8`` (float32 TFLite, post-training int8, the QAT int8 copy).
4. ``eval --model`` on each TFLite file: the same COCO evaluator as the float Keras model.
   Target: the QAT int8 file within 1.0 mAP@.5 point of float; PTQ int8 reported beside it.

    python benchmarks/detect_demo.py [--qat-steps 100] [--project /tmp/detect-demo] [-- extra train flags]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from app_process import run_app
from machine import machine_info

from vision_core.storage.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "detect_demo.json"
TRAIN_MINUTES_TARGET = 20.0
MAP50_TARGET = 0.80
QAT_POINTS_TARGET = 1.0


def detect(*args: str) -> tuple[float, str]:
    """``python -m apps.detect args``: ``(seconds, stdout)``."""
    return run_app("apps.detect", *args)


def headline(metrics: dict) -> dict:
    return {key: metrics[key] for key in ("mAP", "mAP50", "mAP75", "AR100")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--project",
        type=Path,
        default=Path("/tmp/detect-demo-benchmark"),
        help="folder for the run (default: /tmp/detect-demo-benchmark)",
    )
    parser.add_argument("--qat-steps", type=int, default=100, help="QAT fine-tune steps (default: 100)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON output (default: {OUT.relative_to(ROOT)})")
    parser.add_argument("train_flags", nargs="*", help="extra flags for train after --, e.g. -- --epochs 4")
    args = parser.parse_args(argv)

    result: dict = {"machine": machine_info(), "train_flags": args.train_flags}
    demo_data = args.project / "detect-demo"
    if demo_data.exists():
        shutil.rmtree(demo_data)  # time the generation a newcomer's first run pays
    seconds, _ = detect(
        "train",
        "--project",
        str(args.project),
        "--name",
        "demo",
        "--exist-ok",
        "--demo-dir",
        str(demo_data),
        *args.train_flags,
    )
    run = args.project / "demo"
    trained = json.loads((run / "metrics.json").read_text())
    result["train"] = {
        "seconds": round(seconds, 1),
        "minutes": round(seconds / 60, 2),
        "epochs": trained["epochs"],
        "best_epoch": trained["best_epoch"],
        "float": headline(trained["metrics"]),
        "per_class": trained["metrics"]["per_class"],
    }
    print(f"train: {seconds / 60:.1f} min, mAP50 {trained['metrics']['mAP50']:.4f}", flush=True)

    seconds, _ = detect("qat", "--run", str(run), "--steps", str(args.qat_steps))
    result["qat"] = {"seconds": round(seconds, 1), "steps": args.qat_steps}
    seconds, _ = detect("export", "--run", str(run), "--format", "tflite", "int8")
    result["export_seconds"] = round(seconds, 1)

    forms = {
        "float32_tflite": "detect_float32.tflite",
        "int8_ptq_tflite": "detect_int8.tflite",
        "int8_qat_tflite": "detect_int8_qat.tflite",
    }
    result["forms"] = {}
    for form, name in forms.items():
        detect("eval", "--run", str(run), "--model", str(run / "exports" / name))
        metrics = json.loads((run / f"eval_{name}.json").read_text())["metrics"]
        result["forms"][form] = headline(metrics)
    float_map50 = result["train"]["float"]["mAP50"]
    result["delta_mAP50_points"] = {
        form: round(100 * (m["mAP50"] - float_map50), 2) for form, m in result["forms"].items()
    }
    result["targets"] = {
        "train_minutes <= 20": result["train"]["minutes"] <= TRAIN_MINUTES_TARGET,
        "float mAP50 >= 0.80": float_map50 >= MAP50_TARGET,
        "QAT int8 within 1.0 mAP50 point": abs(result["delta_mAP50_points"]["int8_qat_tflite"]) <= QAT_POINTS_TARGET,
    }
    result["machine"]["load_average_end"] = list(os.getloadavg())
    write_atomic(args.out, json.dumps(result, indent=2, default=float).encode())
    print(json.dumps({k: result[k] for k in ("train", "delta_mAP50_points", "targets")}, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
