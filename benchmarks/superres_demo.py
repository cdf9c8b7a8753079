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

from pathlib import Path

from app_process import demo_arguments, demo_run, write_result

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "superres_demo.json"
TRAIN_MINUTES_TARGET = 20.0
GAIN_TARGET_DB = 1.5
QAT_DB_TARGET = 0.1
HEADLINE = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "psnr_gain", "images", "scale")


def main(argv: list[str] | None = None) -> dict:
    args = demo_arguments(__doc__, "superres", 300, OUT, argv)
    result = demo_run("superres", args, HEADLINE)
    float_psnr = result["float"]["psnr"]
    result["delta_psnr_db"] = {form: round(m["psnr"] - float_psnr, 4) for form, m in result["forms"].items()}
    result["targets"] = {
        "train_minutes <= 20": result["train"]["wall_minutes"] <= TRAIN_MINUTES_TARGET,
        "gain over bicubic >= 1.5 dB": result["float"]["psnr_gain"] >= GAIN_TARGET_DB,
        "QAT int8 within 0.1 dB": abs(result["delta_psnr_db"]["int8_qat_tflite"]) <= QAT_DB_TARGET,
    }
    write_result(result, args.out, ("train", "delta_psnr_db", "targets"))
    return result


if __name__ == "__main__":
    main()
