"""The segmentation demo as a newcomer runs it, timed and scored (JSON out).

Runs, each as its own ``python -m apps.segment`` process in a fresh project folder:

1. ``train`` with no config arguments (the ``demo`` preset: the FFNet-style mobile head on ResNet-18
   at 96 px, on the built-in shape scenes, generated afresh in the project folder as on a newcomer's
   machine), timed wall clock from launch to exit, dataset generation included. Targets: <= 20
   minutes on a 2-core CPU, mIoU >= 0.80 on the demo validation split.
2. ``qat`` (TF-MOT fine-tune in a tf_keras process -> ``qat/qat_int8.tflite``).
3. ``export --format float32 int8`` (float32 TFLite, post-training int8, the QAT int8 copy).
4. ``eval --model`` on each TFLite file: the same evaluator (one pixel confusion matrix, each image at
   its own size) as the float Keras model. Target: the QAT int8 file within 0.5 mIoU point of float;
   PTQ int8 reported beside it.

Wall and CPU seconds of each step are recorded (CPU: of the app's process and its children, so a
shared machine shows as a CPU share below the cores' count). A quick check of the script itself::

    python benchmarks/segment_demo.py --qat-steps 2 --out /tmp/segment_demo.json -- \\
        --epochs 1 --demo-train 32 --demo-val 8 --input-size 64 --demo-size 64

    python benchmarks/segment_demo.py [--qat-steps N] [--project /tmp/segment-demo] [-- extra train flags]
"""

from __future__ import annotations

from pathlib import Path

from app_process import demo_arguments, demo_run, write_result

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "segment_demo.json"
TRAIN_MINUTES_TARGET = 20.0
MIOU_TARGET = 0.80
QAT_POINTS_TARGET = 0.5
HEADLINE = ("mIoU", "pixel_accuracy", "fw_iou", "per_class_iou", "images")


def main(argv: list[str] | None = None) -> dict:
    args = demo_arguments(__doc__, "segment", 100, OUT, argv)
    result = demo_run("segment", args, HEADLINE)
    float_miou = result["float"]["mIoU"]
    result["delta_mIoU_points"] = {
        form: round(100 * (m["mIoU"] - float_miou), 3) for form, m in result["forms"].items()
    }
    result["targets"] = {
        "train_minutes <= 20": result["train"]["wall_minutes"] <= TRAIN_MINUTES_TARGET,
        "float mIoU >= 0.80": float_miou >= MIOU_TARGET,
        "QAT int8 within 0.5 mIoU point": abs(result["delta_mIoU_points"]["int8_qat_tflite"]) <= QAT_POINTS_TARGET,
    }
    write_result(result, args.out, ("train", "delta_mIoU_points", "targets"))
    return result


if __name__ == "__main__":
    main()
