"""Int8 accuracy and agreement of every backbone classifier trained on built-in shapes (JSON out).

For each backbone: train the 4-class classifier (``--images`` shapes, ``--epochs``),
then score on held-out shapes (400, or ``--val-images``), with one evaluator, the float Keras model, the
post-training int8 TFLite classifier, the QAT Keras model (``--qat-steps`` fine-tune
steps in the tf_keras process, batch norms frozen unless ``--qat-train-batch-norm``,
distilling the float model's logits unless ``--qat-loss labels``) and the QAT int8
TFLite classifier. Also the cosine of the PTQ int8 feature maps C2..C5 to float.
Results are rewritten after every backbone; at the end, or alone with ``--table``, they print as
a Markdown table with the verdict on the target (QAT int8 agreement >= 99 %, accuracy within 1 point).

Every backbone trains 3 epochs at a peak learning rate of 2e-3 except those with a recipe
of their own (:data:`vision_core.backbones.shapes_training.RECIPES`); ``--epochs`` / ``--lr``
override both. ``--cycles N`` runs that schedule N times, each from the weights of the one before
(a fresh warm-up and cosine decay; kept weights of the earlier cycles are reused).

The trained float weights are kept in ``--float-weights`` (default
``benchmarks/results/float_weights/``, one file per backbone, size, images, epochs, cycle, learning
rate and seed) and reused by later runs, and training checkpoints every epoch there: a run
killed during training resumes after its last epoch, and one killed after training measures
again without training. Pass ``--retrain`` after changing a backbone's code.

    python benchmarks/backbone_int8.py [NAMES...] [--size 64] [--images 8000] [--epochs N] [--cycles N] [--lr LR]
                                       [--val-images 400] [--retrain]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tflite.runtime import TFLiteModel
from vision_core.atomic import write_atomic
from vision_core.backbones import list_backbones
from vision_core.backbones.int8_check import (CALIBRATION_IMAGES, HELD_OUT_IMAGES, agreement_table,
                                              calibration_batches, cycle_weights_paths, float_training_state_path,
                                              float_weights_path, held_out_shapes, ptq_feature_agreement,
                                              train_classifier, write_qat_spec)
from vision_core.backbones.shapes_training import shapes_cycles, shapes_recipe
from vision_core.data.synthetic import SHAPE_CLASSES
from vision_core.quant import qat_job
from vision_core.quant.convert import convert
from vision_core.quant.report import classification_evaluator, compare, logit_rms_error, top1_agreement
from vision_core.weights import load_npz, weights_by_path

LEARNING_RATE = 2e-3


def measure(name: str, size: int, images: int, epochs: int, cycles: int, learning_rate: float, qat_steps: int,
            qat_learning_rate: float, qat_loss: str, qat_train_batch_norm: bool, qat_ranges: str,
            float_weights: Path, work: Path, val_images: int) -> dict:
    start = time.perf_counter()
    weights_file = float_weights_path(float_weights, name, size, images, epochs, learning_rate, cycles=cycles)
    reused = weights_file.is_file()
    classifier, x, labels = train_classifier(name, size, images, epochs, learning_rate, float_weights=float_weights,
                                             verbose=2, cycles=cycles)
    val_x, val_y = held_out_shapes(size, val_images)
    calibration = calibration_batches(x)
    cosines, _ = ptq_feature_agreement(name, size, weights_by_path(classifier), x[:CALIBRATION_IMAGES],
                                       val_x[:16])
    ptq = TFLiteModel(convert(classifier, "int8", calibration))
    # the fine-tune sees qat_steps x 16 images: hand the job the first 1024, not all of them
    spec = write_qat_spec(work / name, classifier, name, size, x[:1024], labels[:1024], val_x[:4],
                          steps=qat_steps, batch_size=16, calibration_images=CALIBRATION_IMAGES, eval_x=val_x,
                          learning_rate=qat_learning_rate, distill=qat_loss == "distillation",
                          freeze_batch_norm=not qat_train_batch_norm, calibration_ranges=qat_ranges)
    qat = qat_job.launch(spec)
    forms = {
        "float": {"predictions": classifier.predict(val_x, batch_size=50, verbose=0)},
        "ptq_int8.tflite": ptq(val_x),
        "qat_keras": load_npz(spec.parent / "qat" / "eval_outputs.npz"),
        "qat_int8.tflite": TFLiteModel(spec.parent / "qat" / "qat_int8.tflite")(val_x),
    }
    rows = compare(classification_evaluator(val_y), forms, reference="float", agreement=top1_agreement)
    # agreement counts flips, which near-tied images dominate; the logit error measures the int8 graph
    for row in rows:
        row["logit_rms_error"] = logit_rms_error(forms["float"], forms[row["form"]])
    # agreement means little if the float model predicts one class: record how its top-1 spreads
    float_top1 = np.argmax(forms["float"]["predictions"], axis=-1)
    return {
        "backbone": name,
        "input_size": size,
        "train_images": images,
        "epochs": epochs,
        "cycles": cycles,
        "learning_rate": learning_rate,
        "qat_steps": qat_steps,
        "qat_learning_rate": qat_learning_rate,
        "qat_loss": qat_loss,
        "qat_train_batch_norm": qat_train_batch_norm,
        "qat_ranges": qat_ranges,
        "float_weights": str(weights_file),
        "float_weights_reused": reused,
        "val_images": len(val_y),
        "forms": rows,
        "float_top1_counts": np.bincount(float_top1, minlength=len(SHAPE_CLASSES)).tolist(),
        "ptq_int8_feature_cosine": cosines,
        "qat_int8_ops": qat["ops"],
        "qat_seconds": qat["seconds"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="backbones (default: all)")
    parser.add_argument("--size", type=int, default=64, help="input size (default: 64)")
    parser.add_argument("--images", type=int, default=8000,
                        help="training images (default: 8000; on 2000 MobileNetV2 over-fits at 65 %% "
                             "validation accuracy)")
    parser.add_argument("--epochs", type=int, help="float training epochs (default: 3, or the backbone's recipe)")
    parser.add_argument("--cycles", type=int,
                        help="run the float training schedule this many times, each from the weights of the one "
                             "before (default: 1, or the backbone's recipe)")
    parser.add_argument("--lr", type=float,
                        help="float training peak Adam learning rate (default: 2e-3, or the backbone's recipe)")
    parser.add_argument("--val-images", type=int, default=HELD_OUT_IMAGES,
                        help="held-out shapes scored (default: %(default)s, the table's; one flip is 0.25 point "
                             "of agreement there, 0.05 on 2000, which keep the 400 as their first images)")
    parser.add_argument("--qat-steps", type=int, default=100, help="QAT fine-tune steps (default: 100)")
    parser.add_argument("--qat-lr", type=float, default=1e-6,
                        help="QAT fine-tune Adam learning rate (default: 1e-6; Adam moves every weight by about "
                             "the learning rate per step: 20 steps at 1e-5 moved 2.5 %% of VoVNet-57's predictions "
                             "even when distilling)")
    parser.add_argument("--qat-loss", choices=("distillation", "labels"), default="distillation",
                        help="QAT fine-tune target: the float model's logits (default) or the class labels, which "
                             "pull held-out predictions toward the training labels")
    parser.add_argument("--qat-train-batch-norm", action="store_true",
                        help="train the batch norms in the QAT fine-tune (default: frozen at the float statistics)")
    parser.add_argument("--qat-ranges", choices=qat_job.RANGE_STATISTICS, default="batch_mean",
                        help="QAT activation ranges from the calibration batches: the mean of their min/max "
                             "(default) or the min/max over all of them, as post-training int8 calibrates")
    parser.add_argument("--float-weights", default="benchmarks/results/float_weights",
                        help="folder keeping each trained float model and its per-epoch training state "
                             "(default: benchmarks/results/float_weights)")
    parser.add_argument("--retrain", action="store_true",
                        help="train again even when --float-weights holds this recipe's weights")
    parser.add_argument("--out", default="benchmarks/results/backbone_int8.json", help="JSON output file")
    parser.add_argument("--table", action="store_true",
                        help="print the results already in --out as a Markdown table and exit")
    args = parser.parse_args()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else []
    if args.table:
        if not results:
            parser.error(f"{out}: no results to show")
        print(agreement_table(results))
        return 0
    with tempfile.TemporaryDirectory(prefix="backbone_int8_") as tmp:
        for name in tqdm(args.names or list_backbones(), desc="backbones", file=sys.stderr):
            epochs, learning_rate = shapes_recipe(name, LEARNING_RATE, args.epochs, args.lr)
            cycles = shapes_cycles(name, args.cycles)
            if args.retrain:
                for weights_file in cycle_weights_paths(args.float_weights, name, args.size, args.images, epochs,
                                                        learning_rate, cycles):
                    weights_file.unlink(missing_ok=True)
                    float_training_state_path(weights_file).unlink(missing_ok=True)
            result = measure(name, args.size, args.images, epochs, cycles, learning_rate, args.qat_steps, args.qat_lr,
                             args.qat_loss, args.qat_train_batch_norm, args.qat_ranges, Path(args.float_weights),
                             Path(tmp), args.val_images)
            # read again: another run may have written its backbones meanwhile
            results = [r for r in json.loads(out.read_text()) if r["backbone"] != name] if out.exists() else []
            results.append(result)
            write_atomic(out, json.dumps(results, indent=2).encode())
            print(json.dumps({"backbone": name, "forms": result["forms"]}), flush=True)
    print(agreement_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
