"""How near-tied a trained classifier's held-out predictions are, and which ones PTQ int8 flips (JSON out).

Top-1 agreement counts flipped predictions, and an int8 graph flips the images whose float
top-1/top-2 logit margin is smaller than its own logit error. For each classify run (e.g. one
``backbone_int8.py`` kept in ``benchmarks/cache/runs/``; nothing is trained) this scores the run's
best weights on its validation images, counts the images under each margin in ``--thresholds``,
converts the post-training int8 classifier (the run's calibration images, as ``export``) and
lists the images it flips with their float margin and its rank (0: the smallest).

    python benchmarks/float_margins.py benchmarks/cache/runs/revcol_b_64px_8000images_3epochsx1_lr0.0001
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from machine import machine_info
from tqdm import tqdm

from apps.classify.task import ClassifyTask
from vision_core.app import runs
from vision_core.app.ship import calibration_batches
from vision_core.quant.convert import convert
from vision_core.quant.report import logit_rms_error
from vision_core.storage.atomic import write_atomic

THRESHOLDS = (0.1, 0.3, 1.0)


def top2_margins(logits: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 logit of each row."""
    top2 = np.sort(logits, axis=-1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def measure(run_dir: Path, thresholds: tuple[float, ...]) -> dict:
    from tflite.runtime import TFLiteModel

    task = ClassifyTask()
    config = runs.run_config(task, run_dir)
    classifier = runs.load_model(task, config, runs.weights_path(run_dir, "best"))
    val_x, val_y = task.val_images(config)
    logits = classifier.predict(val_x, batch_size=50, verbose=0)
    margins = top2_margins(logits)
    ptq = TFLiteModel(convert(classifier, "int8", calibration_batches(task, config)))(val_x)
    int8_logits = next(iter(ptq.values()))
    flipped = np.flatnonzero(int8_logits.argmax(-1) != logits.argmax(-1))
    return {
        "backbone": config.model.backbone,
        "run": str(run_dir),
        "val_images": len(val_y),
        "float_accuracy": float(np.mean(logits.argmax(-1) == val_y)),
        "margin_median": float(np.median(margins)),
        "images_below_margin": {str(t): int(np.sum(margins < t)) for t in thresholds},
        "ptq_int8_logit_rms_error": logit_rms_error({"logits": logits}, ptq),
        "ptq_int8_flips": [
            {"image": int(i), "float_margin": float(margins[i]), "margin_rank": int(np.sum(margins < margins[i]))}
            for i in flipped
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="classify run folders")
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=THRESHOLDS,
        help="count the held-out images whose float margin is below each (default: 0.1 0.3 1.0)",
    )
    parser.add_argument("--out", default="benchmarks/results/float_margins.json", help="JSON output file")
    args = parser.parse_args()
    results = []
    for run_dir in tqdm(args.runs, desc="runs", file=sys.stderr):
        results.append(measure(run_dir, tuple(args.thresholds)))
        print(json.dumps(results[-1]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps({"machine": machine_info(), "results": results}, indent=2).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
