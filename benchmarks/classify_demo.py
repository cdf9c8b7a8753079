"""The classify app's fundus demo as a newcomer runs it, timed and scored (JSON out).

Runs, each as its own ``python -m apps.classify`` process in a fresh project folder:

1. ``train`` with no config arguments (the ``fundus_resnet18`` preset: ResNet-18 at 96 px on the
   built-in fundus images, generated afresh in the project folder as on a newcomer's machine),
   timed wall clock from launch to exit, dataset generation included. Targets: <= 20 minutes on a
   2-core CPU, ROC AUC >= 0.95 (with its 95 % bootstrap CI, patients resampled) on the demo
   validation split (a fifth of the patients, both eyes).
2. Unless ``--no-ship``: ``qat`` (TF-MOT fine-tune), ``export --format tflite`` and ``eval --model``
   on the float32, int8 PTQ and int8 QAT TFLite files: the same evaluator as the float model.
   Targets: the QAT int8 file's ROC AUC within 0.005 of float and top-1 agreement >= 99 %.
3. Unless ``--no-ship``: ``explain`` on ``--explain-count`` evenly spaced validation images (~10 s each): Grad-CAM,
   integrated gradients, saliency and occlusion of the float model, and the agreement of its occlusion
   maps with the QAT int8 file's (mean Spearman rank correlation, mean top-10 % overlap).

    python benchmarks/classify_demo.py [--no-ship] [--project /tmp/classify-demo] [-- extra train flags]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
from app_process import run_app
from machine import machine_info

from vision_core.storage.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "classify_demo.json"
TRAIN_MINUTES_TARGET = 20.0
AUC_TARGET = 0.95
QAT_AUC_TARGET = 0.005
AGREEMENT_TARGET = 0.99
HEADLINE = ("roc_auc", "roc_auc_ci", "top1", "balanced_accuracy", "sensitivity", "specificity", "threshold", "ece")


def classify(*args: str) -> tuple[float, str]:
    """``python -m apps.classify args``: ``(seconds, stdout)``."""
    return run_app("apps.classify", *args)


def headline(metrics: dict) -> dict:
    """The scalar clinical metrics and the patient-level ROC AUC with its CI."""
    patient = metrics.get("patient", {})
    return {
        **{key: metrics.get(key) for key in HEADLINE},
        "patient_roc_auc": patient.get("roc_auc"),
        "patient_roc_auc_ci": patient.get("roc_auc_ci"),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--project",
        type=Path,
        default=Path("/tmp/classify-demo-benchmark"),
        help="folder for the run (default: /tmp/classify-demo-benchmark)",
    )
    parser.add_argument("--no-ship", action="store_true", help="train only: no qat, export or int8 scoring")
    parser.add_argument(
        "--explain-count", type=int, default=16, help="validation images explained after export (default: 16)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON output (default: {OUT.relative_to(ROOT)})")
    parser.add_argument("train_flags", nargs="*", help="extra flags for train after --, e.g. -- --epochs 4")
    args = parser.parse_args(argv)

    result: dict = {"machine": machine_info(), "train_flags": args.train_flags}
    demo_data = args.project / "classify-fundus"
    if demo_data.exists():
        shutil.rmtree(demo_data)  # time the generation a newcomer's first run pays
    seconds, _ = classify(
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
    metrics = trained["metrics"]
    result["train"] = {
        "seconds": round(seconds, 1),
        "minutes": round(seconds / 60, 2),
        "epochs": trained["epochs"],
        "best_epoch": trained["best_epoch"],
        "validation": {"images": metrics["samples"], "patients": metrics.get("patient", {}).get("patients")},
        "float": headline(metrics),
        "confusion_matrix": metrics["confusion_matrix"],
    }
    print(f"train: {seconds / 60:.1f} min, ROC AUC {metrics['roc_auc']:.4f} {metrics['roc_auc_ci']}", flush=True)
    result["targets"] = {
        "train_minutes <= 20": result["train"]["minutes"] <= TRAIN_MINUTES_TARGET,
        "float ROC AUC >= 0.95": metrics["roc_auc"] >= AUC_TARGET,
    }
    if not args.no_ship:
        seconds, _ = classify("qat", "--run", str(run))
        result["qat_seconds"] = round(seconds, 1)
        seconds, _ = classify("export", "--run", str(run), "--format", "tflite", "--no-score")
        result["export_seconds"] = round(seconds, 1)
        forms = {
            "float32_tflite": "classify_float32.tflite",
            "int8_ptq_tflite": "classify_int8.tflite",
            "int8_qat_tflite": "classify_int8_qat.tflite",
        }
        result["forms"] = {}
        for form, name in forms.items():
            classify("eval", "--run", str(run), "--model", str(run / "exports" / name))
            result["forms"][form] = headline(json.loads((run / f"eval_{name}.json").read_text())["metrics"])
        result["agreement_with_float32"] = top1_agreements(run, forms)
        qat_delta = result["forms"]["int8_qat_tflite"]["roc_auc"] - result["forms"]["float32_tflite"]["roc_auc"]
        result["qat_roc_auc_delta"] = qat_delta
        result["targets"]["QAT int8 ROC AUC within 0.005"] = abs(qat_delta) <= QAT_AUC_TARGET
        result["targets"]["QAT int8 top-1 agreement >= 99 %"] = (
            result["agreement_with_float32"]["int8_qat_tflite"] >= AGREEMENT_TARGET
        )
        seconds, stdout = classify("explain", "--run", str(run), "--count", str(args.explain_count))
        result["explain"] = {"seconds": round(seconds, 1), **json.loads(stdout)["compare"]}
        print(f"explain: occlusion float/int8 agreement {result['explain']}", flush=True)
    result["machine"]["load_average_end"] = list(os.getloadavg())
    write_atomic(args.out, json.dumps(result, indent=2, default=float).encode())
    print(json.dumps(result["targets"], indent=2))
    return result


def top1_agreements(run: Path, forms: dict[str, str]) -> dict[str, float]:
    """Share of validation images whose top-1 class each TFLite form shares with the float32 file's."""
    from apps.classify.task import ClassifyTask
    from vision_core.app import runs

    task = ClassifyTask()
    config = runs.run_config(task, run)
    scores = {form: task.scores(run / "exports" / name, config) for form, name in forms.items()}
    reference = scores["float32_tflite"].argmax(axis=1)
    return {form: float(np.mean(s.argmax(axis=1) == reference)) for form, s in scores.items()}


if __name__ == "__main__":
    main()
