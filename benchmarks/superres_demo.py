"""The super-resolution demo as a newcomer runs it, timed and scored (JSON out).

Runs, each as its own ``python -m apps.superres`` process in a fresh project folder:

1. ``train`` with no config arguments (the ``espcn_x3_y`` preset: ESPCN x3 on the Y channel, on the
   built-in demo images, generated afresh in the project folder as on a newcomer's machine), timed
   wall clock from launch to exit, image generation included. Targets: <= 20 minutes on a 2-core CPU,
   PSNR (Y) >= 1.5 dB above MATLAB-bicubic on the demo validation images.
2. ``qat`` (GPTQ-rounded weights, then the TF-MOT fine-tune -> ``qat/qat_int8.tflite``), ``export
   --format float32 int8`` (float32 TFLite, post-training int8, the QAT int8 copy) and ``eval --model``
   on each file: the same evaluator as the float Keras model. Target: the QAT int8 file within 0.1 dB
   of float; PTQ int8 reported beside it.

    python benchmarks/superres_demo.py [--qat-steps N] [--project /tmp/superres-demo] [-- extra train flags]

A quick check of the script itself::

    python benchmarks/superres_demo.py --qat-steps 2 --out /tmp/superres_demo.json -- \\
        --epochs 1 --demo-train 16 --demo-val 4 --demo-size 48 --patches-per-image 4 --export-size "[16, 16]"
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from app_process import ship_and_score, timed_app
from machine import machine_info

from vision_core.storage.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "superres_demo.json"
TRAIN_MINUTES_TARGET = 20.0
GAIN_TARGET_DB = 1.5
QAT_DB_TARGET = 0.1
HEADLINE = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "psnr_gain", "images", "scale")
FORMS = {
    "float32_tflite": "superres_float32.tflite",
    "int8_ptq_tflite": "superres_int8.tflite",
    "int8_qat_tflite": "superres_int8_qat.tflite",
}


def headline(metrics: dict) -> dict:
    return {key: metrics[key] for key in HEADLINE}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--project",
        type=Path,
        default=Path("/tmp/superres-demo-benchmark"),
        help="folder for the run and the generated images (default: /tmp/superres-demo-benchmark)",
    )
    parser.add_argument("--qat-steps", type=int, help="QAT fine-tune steps (default: the preset's, 300)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON output (default: {OUT.relative_to(ROOT)})")
    parser.add_argument("train_flags", nargs="*", help="extra flags for train after --, e.g. -- --epochs 1")
    args = parser.parse_args(argv)

    result: dict = {"machine": machine_info(), "train_flags": args.train_flags}
    demo_data = args.project / "superres-demo"
    if demo_data.exists():
        shutil.rmtree(demo_data)  # time the generation a newcomer's first run pays
    train = ["train", "--project", str(args.project), "--name", "demo", "--exist-ok", "--demo-dir", str(demo_data)]
    result["train"] = timed_app("apps.superres", *train, *args.train_flags)
    run = args.project / "demo"
    trained = json.loads((run / "metrics.json").read_text())
    result["train"].update(epochs=trained["epochs"], best_epoch=trained["best_epoch"])
    result["float"] = headline(trained["metrics"])
    print(f"train: {result['train']['wall_minutes']:.1f} min, +{result['float']['psnr_gain']:.2f} dB", flush=True)

    shipped = ship_and_score("apps.superres", run, FORMS, args.qat_steps)
    result.update(qat=shipped["qat"], export=shipped["export"])
    result["forms"] = {form: headline(metrics) for form, metrics in shipped["forms"].items()}
    float_psnr = result["float"]["psnr"]
    result["delta_psnr_db"] = {form: round(m["psnr"] - float_psnr, 4) for form, m in result["forms"].items()}
    result["targets"] = {
        "train_minutes <= 20": result["train"]["wall_minutes"] <= TRAIN_MINUTES_TARGET,
        "gain over bicubic >= 1.5 dB": result["float"]["psnr_gain"] >= GAIN_TARGET_DB,
        "QAT int8 within 0.1 dB": abs(result["delta_psnr_db"]["int8_qat_tflite"]) <= QAT_DB_TARGET,
    }
    result["machine"]["load_average_end"] = list(os.getloadavg())
    write_atomic(args.out, json.dumps(result, indent=2, default=float).encode())
    print(json.dumps({k: result[k] for k in ("train", "delta_psnr_db", "targets")}, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
