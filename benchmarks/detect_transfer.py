"""Transfer learning on the detection demo: RetinaNet from a classifier's backbone vs. from scratch (JSON out).

One run, three ``python -m`` processes in one project folder:

1. ``apps.classify train`` with the ``shapes_mobilenet_v2`` preset at the demo detector's width
   (``--backbone-alpha 0.5``): a MobileNetV2 pretrained on the 64 px shapes classification data.
2. ``apps.detect train`` with the ``demo`` preset from scratch, evaluated every half epoch
   (the demo's 4 epochs as 8 "epochs" of half the steps, the same schedule in steps).
3. The same with ``--backbone-weights`` of the classifier's best weights.

The JSON holds each detector's mAP@.5 after every half epoch and the first epoch at which each
reaches the demo's target mAP@.5 (0.80) and the scratch run's final mAP@.5. Target of issue #33:
the pretrained start reaches the demo's mAP@.5 in fewer epochs than scratch.

    python benchmarks/detect_transfer.py [--project /tmp/detect-transfer]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

from app_process import run_app
from machine import machine_info

from vision_core.storage.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "detect_transfer.json"
DEMO_MAP50 = 0.80
DEMO_EPOCHS = 4
DEMO_TRAIN_IMAGES = 3000
DEMO_BATCH = 8
HALVES = 2  # evaluations per demo epoch


def map50_by_epoch(run: Path) -> list[float]:
    """``val_mAP50`` of each row of the run's ``results.csv``."""
    with open(run / "results.csv", newline="") as file:
        return [float(row["val_mAP50"]) for row in csv.DictReader(file)]


def first_epoch(curve: list[float], target: float) -> float | None:
    """The first demo epoch (in halves) whose mAP@.5 reaches ``target``; None if none does."""
    for index, value in enumerate(curve):
        if value >= target:
            return (index + 1) / HALVES
    return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--project", type=Path, default=Path("/tmp/detect-transfer"), help="folder of the runs (default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON output (default: {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    project = str(args.project)
    result: dict = {"machine": machine_info()}

    seconds, _ = run_app(
        "apps.classify",
        "train",
        "--preset",
        "shapes_mobilenet_v2",
        "--backbone-alpha",
        "0.5",
        "--project",
        project,
        "--name",
        "classifier",
        "--exist-ok",
        "--demo-dir",
        str(args.project / "classify-shapes"),
    )
    classifier = args.project / "classifier"
    result["classifier"] = {
        "preset": "shapes_mobilenet_v2 --backbone-alpha 0.5",
        "seconds": round(seconds, 1),
        "top1": json.loads((classifier / "metrics.json").read_text())["metrics"]["top1"],
    }

    steps = DEMO_TRAIN_IMAGES // DEMO_BATCH // HALVES
    schedule = [
        "--epochs",
        str(DEMO_EPOCHS * HALVES),
        "--steps-per-epoch",
        str(steps),
        "--set",
        f"train.warmup_epochs={HALVES / 3}",
        "--set",
        "train.eval_interval=1",
    ]
    demo = ["--project", project, "--exist-ok", "--demo-dir", str(args.project / "detect-demo"), *schedule]
    weights = classifier / "weights" / "best.weights.npz"
    curves = {}
    for name, extra in (("scratch", []), ("pretrained", ["--backbone-weights", str(weights)])):
        seconds, _ = run_app("apps.detect", "train", "--name", name, *demo, *extra)
        curves[name] = map50_by_epoch(args.project / name)
        result[name] = {"seconds": round(seconds, 1), "mAP50_by_half_epoch": curves[name]}
        print(f"{name}: mAP50 by half epoch {curves[name]}", flush=True)

    final = curves["scratch"][-1]
    result["epochs_to_reach"] = {
        f"demo target {DEMO_MAP50}": {name: first_epoch(curve, DEMO_MAP50) for name, curve in curves.items()},
        f"scratch final {final:.4f}": {name: first_epoch(curve, final) for name, curve in curves.items()},
    }
    reached = result["epochs_to_reach"][f"demo target {DEMO_MAP50}"]
    result["targets"] = {
        "pretrained reaches the demo mAP50 in fewer epochs": reached["pretrained"] is not None
        and (reached["scratch"] is None or reached["pretrained"] < reached["scratch"])
    }
    result["machine"]["load_average_end"] = list(os.getloadavg())
    write_atomic(args.out, json.dumps(result, indent=2, default=float).encode())
    print(json.dumps({k: result[k] for k in ("epochs_to_reach", "targets")}, indent=2))
    return result


if __name__ == "__main__":
    main()
