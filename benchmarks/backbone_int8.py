"""Int8 accuracy and agreement of every backbone classifier trained on the built-in shapes (JSON out).

Runs on the classify app (``apps/classify``), as a user would: for each backbone, ``train``
with its preset ``shapes_<backbone>`` (RevCol: ``shapes_<backbone>_column0`` first, whose
weights start the full model), ``qat`` (the preset's distilled fine-tune, batch norms frozen,
unless ``--qat-*`` say otherwise) and ``export --format int8`` (post-training int8 and the QAT
int8 file), then one evaluator scores, on the held-out shapes (400, or ``--val-images``), the
float Keras model, the post-training int8 TFLite classifier, the QAT Keras model and the QAT
int8 TFLite classifier, with each form's agreement with float and RMS error of its class
probabilities. Also the
cosine of the post-training int8 feature maps C2..C5 to float. Results are rewritten after
every backbone; at the end, or alone with ``--table``, they print as a Markdown table with the
verdict on the target (QAT int8 agreement >= 99 %, accuracy within 1 point).

Runs are kept in ``--runs`` (default ``benchmarks/cache/runs/``), one per backbone and setting:
a finished run is measured again without training, an interrupted one resumes after its last
epoch. Pass ``--retrain`` after changing a backbone's code.

    python benchmarks/backbone_int8.py [NAMES...] [--size 64] [--images 8000] [--epochs N] [--cycles N] [--lr LR]
                                       [--val-images 400] [--retrain]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine_info
from tqdm import tqdm

from apps.classify.task import ClassifyTask
from vision_core.app import runs
from vision_core.app.config import resolve
from vision_core.app.trainer import train
from vision_core.backbones import list_backbones
from vision_core.classification.predict import to_probabilities
from vision_core.classification.runners import ClassifierRunner
from vision_core.quant.int8_check import agreement_table, ptq_feature_agreement
from vision_core.quant.qat_job import RANGE_STATISTICS
from vision_core.quant.report import logit_rms_error
from vision_core.storage.atomic import write_atomic
from vision_core.storage.weights import load_npz, weights_by_path


class StoredScores(ClassifierRunner):
    """The QAT Keras model's scores on the held-out images, as the QAT job kept them."""

    def __init__(self, path: Path):
        super().__init__(str(path), None)
        self.scores = next(iter(load_npz(path).values()))

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.scores


def config_for(preset: str, args, **overrides):
    """The preset's config with this run's settings (unset options keep the recipe's)."""
    flags = {
        "dataset.demo_train": args.images,
        "dataset.demo_val": args.val_images,
        "model.input_size": args.size,
        "dataset.demo_dir": str(Path(args.runs) / "shapes" / f"{args.images}_{args.val_images}"),
        "qat.steps": args.qat_steps,
        "qat.fine_tune_lr": args.qat_lr,
        "qat.fine_tune_target": "task" if args.qat_loss == "labels" else "distillation",
        "qat.freeze_batch_norm": not args.qat_train_batch_norm,
        "qat.calibration_ranges": args.qat_ranges,
        **overrides,
    }
    config = resolve(ClassifyTask.presets, preset, flags=flags)
    if args.epochs or args.cycles:
        cycles = args.cycles or config.train.cycles
        per_cycle = args.epochs or config.train.epochs // config.train.cycles
        config = resolve(
            {"run": config},
            "run",
            flags={"train.epochs": per_cycle * cycles, "train.cycles": cycles, "train.warmup_epochs": per_cycle / 10},
        )
    if args.lr:
        config = resolve({"run": config}, "run", flags={"train.learning_rate": args.lr})
    return config


def run_name(config) -> str:
    t, m = config.train, config.model
    column = "_column0" if m.first_column_only else ""
    return (
        f"{m.backbone}{column}_{m.input_size}px_{config.dataset.demo_train}images_{t.epochs}epochs"
        f"x{t.cycles}_lr{t.learning_rate:g}"
    )


def trained(task: ClassifyTask, config, folder: Path, retrain: bool):
    """The run of ``config`` in ``folder``: trained, resumed, or (finished) reused; ``(model, run dir)``."""
    run_dir = folder / run_name(config)
    if retrain and run_dir.exists():
        shutil.rmtree(run_dir)
    if not (run_dir / runs.METRICS).is_file():
        train(task, config, run_dir, resume=(run_dir / runs.STATE).is_file())
    return runs.load_model(task, config, runs.weights_path(run_dir, "best")), run_dir


def measure(name: str, args, work: Path) -> dict:
    start = time.perf_counter()
    task, folder = ClassifyTask(), Path(args.runs)
    init = {}
    if f"shapes_{name}_column0" in task.presets:
        _, column0 = trained(task, config_for(f"shapes_{name}_column0", args), folder, args.retrain)
        init = {"train.init_weights": str(runs.weights_path(column0, "best"))}
    config = config_for(f"shapes_{name}", args, **init)
    reused = (folder / run_name(config) / runs.METRICS).is_file() and not args.retrain
    model, run_dir = trained(task, config, folder, args.retrain)
    task.qat(model, config, run_dir)
    written = task.export(model, config, run_dir, ["int8"], saved_models=work / "saved_models")
    forms = {
        "float": model,
        "ptq_int8.tflite": written["int8"],
        "qat_keras": StoredScores(run_dir / "qat" / "eval_outputs.npz"),
        "qat_int8.tflite": written["int8_qat"],
    }
    rows = task.compare_forms(forms, config)
    # agreement counts flips, which near-tied images dominate; the probability error measures the int8 graph
    # (the shipped files end in softmax, the Keras models in logits: compare probabilities)
    scores = {form: to_probabilities(task.scores(model_or_file, config)) for form, model_or_file in forms.items()}
    for row in rows:
        row["probability_rms_error"] = logit_rms_error({"s": scores["float"]}, {"s": scores[row["form"]]})
    images, _ = task.val_images(config)
    calibration = np.concatenate(list(task.representative_data(config, 4)))[: config.qat.calibration_images]
    cosines, _ = ptq_feature_agreement(name, config.model.input_size, weights_by_path(model), calibration, images[:16])
    qat = json.loads((run_dir / "qat" / "report.json").read_text())["job"]
    float_top1 = np.argmax(scores["float"], axis=-1)
    return {
        "machine": machine_info(),
        "backbone": name,
        "input_size": config.model.input_size,
        "train_images": config.dataset.demo_train,
        "epochs": config.train.epochs // config.train.cycles,
        "cycles": config.train.cycles,
        "learning_rate": config.train.learning_rate,
        "qat": dataclasses.asdict(config.qat),
        "run": str(run_dir),
        "run_reused": reused,
        "val_images": len(images),
        "forms": rows,
        "float_top1_counts": np.bincount(float_top1, minlength=len(task.class_names(config))).tolist(),
        "ptq_int8_feature_cosine": cosines,
        "qat_int8_ops": qat["ops"],
        "qat_seconds": qat["seconds"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="backbones (default: all)")
    parser.add_argument("--size", type=int, default=64, help="input size (default: 64)")
    parser.add_argument(
        "--images",
        type=int,
        default=8000,
        help="training images (default: 8000; on 2000 MobileNetV2 over-fits at 65 %% validation accuracy)",
    )
    parser.add_argument("--epochs", type=int, help="epochs of one training cycle (default: the backbone's preset)")
    parser.add_argument("--cycles", type=int, help="warm-up + cosine cycles (default: the backbone's preset)")
    parser.add_argument("--lr", type=float, help="peak Adam learning rate (default: the backbone's preset)")
    parser.add_argument(
        "--val-images",
        type=int,
        default=400,
        help="held-out shapes scored (default: %(default)s, the table's; one flip is 0.25 point "
        "of agreement there, 0.05 on 2000, which keep the 400 as their first images)",
    )
    parser.add_argument("--qat-steps", type=int, default=100, help="QAT fine-tune steps (default: 100)")
    parser.add_argument(
        "--qat-lr",
        type=float,
        default=1e-6,
        help="QAT fine-tune Adam learning rate (default: 1e-6; Adam moves every weight by about "
        "the learning rate per step: 20 steps at 1e-5 moved 2.5 %% of VoVNet-57's predictions "
        "even when distilling)",
    )
    parser.add_argument(
        "--qat-loss",
        choices=("distillation", "labels"),
        default="distillation",
        help="QAT fine-tune target: the float model's logits (default) or the class labels, which "
        "pull held-out predictions toward the training labels",
    )
    parser.add_argument(
        "--qat-train-batch-norm",
        action="store_true",
        help="train the batch norms in the QAT fine-tune (default: frozen at the float statistics)",
    )
    parser.add_argument(
        "--qat-ranges",
        choices=RANGE_STATISTICS,
        default="batch_mean",
        help="QAT activation ranges from the calibration batches: the mean of their min/max "
        "(default) or the min/max over all of them, as post-training int8 calibrates",
    )
    parser.add_argument(
        "--runs",
        default="benchmarks/cache/runs",
        help="folder keeping each backbone's classify runs and the shapes (default: benchmarks/cache/runs)",
    )
    parser.add_argument("--retrain", action="store_true", help="train again even when --runs holds this run")
    parser.add_argument("--out", default="benchmarks/results/backbone_int8.json", help="JSON output file")
    parser.add_argument(
        "--table", action="store_true", help="print the results already in --out as a Markdown table and exit"
    )
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
            result = measure(name, args, Path(tmp))
            # read again: another run may have written its backbones meanwhile
            results = [r for r in json.loads(out.read_text()) if r["backbone"] != name] if out.exists() else []
            results.append(result)
            write_atomic(out, json.dumps(results, indent=2, default=float).encode())
            print(json.dumps({"backbone": name, "forms": result["forms"]}, default=float), flush=True)
    print(agreement_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
