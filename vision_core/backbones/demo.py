"""The backbone demo: train a small classifier on built-in shapes, then ship every form of it.

Trains ``backbone`` with a 4-class head on procedurally generated shapes, fine-tunes it
with TF-MOT (QAT), exports the TFLite files (float32, float16, int8 PTQ, int16x8, int8
QAT; with metadata), a TF Serving SavedModel and ONNX files, and scores every form
with the same evaluator on the same validation images. Everything lands in ``out_dir``
(the SavedModel under ``saved_models_root``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tflite.metadata import ModelInfo
from vision_core.atomic import write_atomic
from vision_core.backend import keras
from vision_core.backbones.registry import build_backbone
from vision_core.backbones.shapes_training import fit_shapes_classifier, shapes_cycles, shapes_recipe, shapes_setup
from vision_core.data.synthetic import SHAPE_CLASSES, classification_set, normalize
from vision_core.export.ship import export_forms, report, run_qat, save_run
from vision_core.quant.report import format_table

log = logging.getLogger("vision_core")
LEARNING_RATE = 1e-3  # peak Adam rate; 2e-3 left an 800-image, 75-step ResNet-18 run at chance
QAT_IMAGES = 2000


def train_shapes_classifier(out_dir: str | Path, backbone: str = "resnet18", input_size: int = 64,
                            train_images: int = 8000, val_images: int = 400, epochs: int | None = None,
                            seed: int = 0) -> Path:
    """Train the shapes classifier and save it as a run folder (see :mod:`vision_core.export.ship`).

    ``epochs`` and the learning rate default to the backbone's recipe
    (:func:`~vision_core.backbones.shapes_training.shapes_recipe`), and the schedule runs as many
    cycles as the recipe says (:func:`~vision_core.backbones.shapes_training.shapes_cycles`).
    """
    epochs, learning_rate = shapes_recipe(backbone, LEARNING_RATE, epochs)
    keras.utils.set_random_seed(seed)
    train_x, train_y = classification_set(train_images, input_size, seed=seed)
    val_x, val_y = classification_set(val_images, input_size, seed=seed + 1)
    train_x, val_x = normalize(train_x), normalize(val_x)
    kwargs = {"name": backbone, "input_shape": [input_size, input_size, 3], "num_classes": len(SHAPE_CLASSES)}
    build_options, warm_start = shapes_setup(backbone, (input_size, input_size, 3), len(SHAPE_CLASSES))
    model = build_backbone(**kwargs, **build_options)
    log.info("training %s on %d built-in shape images (%s)", backbone, train_images, ", ".join(SHAPE_CLASSES))
    for cycle in range(shapes_cycles(backbone)):
        fit_shapes_classifier(model, train_x, train_y, epochs, learning_rate, validation_data=(val_x, val_y),
                              verbose=2, warm_start=warm_start if cycle == 0 else None)
    info = ModelInfo(task="classification", name=f"{backbone}_shapes", labels=list(SHAPE_CLASSES),
                     description=f"{backbone} trained on the suite's built-in shapes")
    # QAT fine-tunes see steps x 16 images (1600 for the default 100): the run keeps the first QAT_IMAGES
    data = {"calibration": train_x[:200], "train_x": train_x[:QAT_IMAGES], "train_y": train_y[:QAT_IMAGES],
            "eval_x": val_x, "eval_y": val_y}
    return save_run(out_dir, model, "vision_core.backbones:build_backbone", kwargs, info, data)


def run_demo(out_dir: str | Path, backbone: str = "resnet18", input_size: int = 64, epochs: int | None = None,
             qat_steps: int = 100, saved_models_root: str | Path = "saved_models", train_images: int = 8000,
             val_images: int = 400, seed: int = 0, qat_loss: str = "distillation") -> dict:
    """Train, QAT (``qat_loss``: see :func:`~vision_core.export.ship.run_qat`), export every form,
    score them; returns (and writes) ``metrics.json``."""
    run_dir = train_shapes_classifier(out_dir, backbone, input_size, train_images, val_images, epochs, seed)
    log.info("QAT: %d fine-tune steps (%s) in a tf_keras process", qat_steps, qat_loss)
    qat = run_qat(run_dir, steps=qat_steps, loss=qat_loss)
    log.info("exporting TFLite (float32, float16, int8 PTQ, int16x8, int8 QAT), SavedModel and ONNX")
    forms = export_forms(run_dir, ["all"], saved_models_root)
    rows = report(run_dir, forms)
    log.info("same evaluator, every form (validation images):\n%s", format_table(rows))
    metrics = {"backbone": backbone, "input_size": input_size, "forms": rows,
               "files": {form: str(path) for form, path in forms.items()},
               "qat_seconds": qat["seconds"], "qat_int8_ops": qat["ops"]}
    write_atomic(Path(run_dir) / "metrics.json", json.dumps(metrics, indent=2).encode())
    return metrics
