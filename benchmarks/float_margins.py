"""How near-tied a kept float classifier's held-out predictions are, and which ones PTQ int8 flips (JSON out).

Top-1 agreement counts flipped predictions, and an int8 graph flips the images whose float
top-1/top-2 logit margin is smaller than its own logit error. For each backbone this loads the
float classifier ``backbone_int8.py`` trained and kept (same recipe, ``--epochs`` / ``--cycles`` /
``--lr`` as there; nothing is trained: a missing weights file is an error), scores the 400
held-out shapes, counts the images under each margin in ``--thresholds``, converts the
post-training int8 TFLite classifier (128 calibration images, as ``backbone_int8.py``) and lists
the images it flips with their float margin and its rank among the 400 (0: the smallest).

    python benchmarks/float_margins.py revcol_b --cycles 2 --float-weights /path/to/float_weights
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from backbone_int8 import LEARNING_RATE
from machine import machine_info
from tflite.runtime import TFLiteModel
from vision_core.atomic import write_atomic
from vision_core.backbones.int8_check import (calibration_batches, float_weights_path, held_out_shapes,
                                              train_classifier)
from vision_core.backbones.shapes_training import shapes_cycles, shapes_recipe
from vision_core.quant.convert import convert
from vision_core.quant.report import logit_rms_error

THRESHOLDS = (0.1, 0.3, 1.0)


def top2_margins(logits: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 logit of each row."""
    top2 = np.sort(logits, axis=-1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def measure(name: str, size: int, images: int, epochs: int, cycles: int, learning_rate: float,
            float_weights: Path, thresholds: tuple[float, ...]) -> dict:
    weights_file = float_weights_path(float_weights, name, size, images, epochs, learning_rate, cycles=cycles)
    if not weights_file.is_file():
        raise SystemExit(f"{weights_file}: no kept float weights; train them with "
                         f"`python benchmarks/backbone_int8.py {name} --float-weights {float_weights}`")
    classifier, x, _ = train_classifier(name, size, images, epochs, learning_rate, float_weights=float_weights,
                                        verbose=0, cycles=cycles)
    val_x, val_y = held_out_shapes(size)
    logits = classifier.predict(val_x, batch_size=50, verbose=0)
    margins = top2_margins(logits)
    ptq = TFLiteModel(convert(classifier, "int8", calibration_batches(x)))(val_x)
    int8_logits = next(iter(ptq.values()))
    flipped = np.flatnonzero(int8_logits.argmax(-1) != logits.argmax(-1))
    return {
        "backbone": name,
        "float_weights": str(weights_file),
        "val_images": len(val_y),
        "float_accuracy": float(np.mean(logits.argmax(-1) == val_y)),
        "margin_median": float(np.median(margins)),
        "images_below_margin": {str(t): int(np.sum(margins < t)) for t in thresholds},
        "ptq_int8_logit_rms_error": logit_rms_error({"logits": logits}, ptq),
        "ptq_int8_flips": [{"image": int(i), "float_margin": float(margins[i]),
                            "margin_rank": int(np.sum(margins < margins[i]))} for i in flipped],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", help="backbones whose float weights backbone_int8.py kept")
    parser.add_argument("--size", type=int, default=64, help="input size (default: 64)")
    parser.add_argument("--images", type=int, default=8000, help="training images (default: 8000)")
    parser.add_argument("--epochs", type=int, help="float training epochs (default: 3, or the backbone's recipe)")
    parser.add_argument("--cycles", type=int, help="float training cycles (default: 1, or the backbone's recipe)")
    parser.add_argument("--lr", type=float,
                        help="float training peak learning rate (default: 2e-3, or the backbone's recipe)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS,
                        help="count the held-out images whose float margin is below each (default: 0.1 0.3 1.0)")
    parser.add_argument("--float-weights", default="benchmarks/results/float_weights",
                        help="folder of backbone_int8.py's kept float weights "
                             "(default: benchmarks/results/float_weights)")
    parser.add_argument("--out", default="benchmarks/results/float_margins.json", help="JSON output file")
    args = parser.parse_args()
    results = []
    for name in tqdm(args.names, desc="backbones", file=sys.stderr):
        epochs, learning_rate = shapes_recipe(name, LEARNING_RATE, args.epochs, args.lr)
        results.append(measure(name, args.size, args.images, epochs, shapes_cycles(name, args.cycles),
                               learning_rate, Path(args.float_weights), tuple(args.thresholds)))
        print(json.dumps(results[-1]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps({"machine": machine_info(), "results": results}, indent=2).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
