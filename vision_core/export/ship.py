"""Every shipped form of a trained model from its run folder, and one report that scores them all.

A run folder is what training leaves behind (:func:`save_run`)::

    run.json            {"builder": "module:function", "kwargs": {...}, "info": ModelInfo fields}
    float.weights.npz   weights_by_path() of the float Keras 3 model
    data.npz            calibration / train_x / train_y / eval_x: float32 [N, H, W, C], normalised
                        as info.mean / info.std say; train_y, eval_y: int labels
    qat/                written by :func:`run_qat` (TF-MOT in a tf_keras process): qat_int8.tflite
                        (uint8 input, metadata), qat.weights.npz, eval_outputs.npz, result.json

:func:`export_forms` writes the forms named in :data:`FORMATS` (``tflite`` means the four
TFLite files, ``all`` means everything) and :func:`report` scores the float model, the QAT
model and every exported file with the task's evaluator on ``eval_x`` (deltas to float).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from tflite.metadata import ModelInfo
from tflite.runtime import TFLiteModel
from vision_core.atomic import copy_atomic, write_atomic
from vision_core.quant import qat_job
from vision_core.quant.report import classification_evaluator, compare, top1_agreement
from vision_core.weights import assign_by_path, load_npz, save_npz, weights_by_path

TFLITE_FORMS = {"float32": "float32", "float16": "float16", "int8_ptq": "int8", "int16x8": "int16x8"}
FORMATS = ("tflite", "saved_model", "onnx")
# QAT fine-tune targets of a classifier run, with their default Adam learning rates: distilling the
# float logits keeps the float model's predictions (VoVNet-57, 100 steps at 1e-6: 99.00 % int8
# agreement); labels pull held-out predictions toward the training labels (20 steps at 1e-5: 91.25 %)
QAT_LOSSES = {"distillation": ("distillation_kl_from_logits", 1e-6),
              "labels": ("sparse_categorical_crossentropy_from_logits", 1e-4)}
EVALUATORS = {"classification": lambda labels: classification_evaluator(labels)}
AGREEMENT = {"classification": top1_agreement}


def save_run(run_dir: str | Path, model, builder: str, kwargs: dict, info: ModelInfo, data: dict) -> Path:
    """Write ``run.json``, the float weights and the data arrays (see the module docstring)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_npz(weights_by_path(model), run_dir / "float.weights.npz")
    save_npz(data, run_dir / "data.npz")
    config = {"builder": builder, "kwargs": kwargs, "info": json.loads(info.to_json())}
    config["info"].pop("input_range")
    write_atomic(run_dir / "run.json", json.dumps(config, indent=2).encode())
    return run_dir


def read_run(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a run folder (no run.json); train first")
    return json.loads(path.read_text())


def run_info(run_dir: str | Path) -> ModelInfo:
    return ModelInfo(**read_run(run_dir)["info"])


def load_float_model(run_dir: str | Path):
    """The float Keras 3 model of a run, built by its builder and loaded by variable path."""
    config = read_run(run_dir)
    module_name, _, function = config["builder"].partition(":")
    model = getattr(importlib.import_module(module_name), function)(**config["kwargs"])
    assign_by_path(model, load_npz(Path(run_dir) / "float.weights.npz"))
    return model


def run_qat(run_dir: str | Path, steps: int, batch_size: int = 16, loss: str = "distillation",
            learning_rate: float | None = None, timeout: float | None = None) -> dict:
    """Fine-tune the run's model with TF-MOT in a tf_keras process; returns the job's result.json.

    ``loss``: a key of :data:`QAT_LOSSES`; ``learning_rate`` defaults to that loss's.
    """
    if loss not in QAT_LOSSES:
        raise ValueError(f"unknown QAT loss {loss!r}: expected one of {', '.join(QAT_LOSSES)}")
    run_dir = Path(run_dir)
    config = read_run(run_dir)
    job_loss, default_learning_rate = QAT_LOSSES[loss]
    spec = {"builder": config["builder"], "kwargs": config["kwargs"], "weights": "float.weights.npz",
            "data": "data.npz", "steps": steps, "batch_size": batch_size, "loss": job_loss,
            "learning_rate": default_learning_rate if learning_rate is None else learning_rate,
            "out_dir": "qat", "metadata": config["info"]}
    write_atomic(run_dir / "qat_spec.json", json.dumps(spec, indent=2).encode())
    return qat_job.launch(run_dir / "qat_spec.json", timeout=timeout)


def _calibration(run_dir: Path, batch_size: int = 16) -> list[np.ndarray]:
    calibration = load_npz(run_dir / "data.npz")["calibration"]
    return [calibration[i:i + batch_size] for i in range(0, len(calibration), batch_size)]


def export_forms(run_dir: str | Path, formats: list[str], saved_models_root: str | Path = "saved_models") -> dict:
    """Write the requested forms; returns ``{form: path}``. ``formats``: items of FORMATS or ``all``."""
    from vision_core.export.onnx_export import export_onnx_from_saved_model, export_onnx_from_tflite
    from vision_core.export.saved_model import Normalization, export_saved_model
    from vision_core.export.serving_config import write_models_config
    from vision_core.export.tflite_export import export_tflite

    wanted = set(FORMATS) if "all" in formats else set(formats)
    unknown = wanted - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}: expected {', '.join(FORMATS)} or all")
    run_dir = Path(run_dir)
    info, out = run_info(run_dir), run_dir / "exports"
    model = load_float_model(run_dir)
    written: dict[str, Path] = {}
    if "tflite" in wanted:
        for form, mode in TFLITE_FORMS.items():
            data = _calibration(run_dir) if mode in ("int8", "int16x8") else None
            written[f"{form}.tflite"] = export_tflite(model, out / f"{info.name}_{form}.tflite", mode, data, info=info)
        qat_file = run_dir / "qat" / "qat_int8.tflite"
        if qat_file.is_file():
            written["int8_qat.tflite"] = copy_atomic(qat_file, out / f"{info.name}_int8_qat.tflite")
    if "saved_model" in wanted or "onnx" in wanted:
        version = export_saved_model(model, saved_models_root, info.name,
                                     preprocess=Normalization(info.mean, info.std))
        write_models_config(saved_models_root)
        written["saved_model"] = version
    if "onnx" in wanted:
        written["float.onnx"] = export_onnx_from_saved_model(written["saved_model"], out / f"{info.name}.onnx")
        int8 = written.get("int8_qat.tflite") or written.get("int8_ptq.tflite")
        if int8 is not None:
            written["int8.onnx"] = export_onnx_from_tflite(int8, out / f"{info.name}_int8.onnx")
    return written


def report(run_dir: str | Path, forms: dict[str, Path]) -> list[dict]:
    """Score float Keras, QAT Keras (if run) and each ``.tflite`` / ``.onnx`` form with one evaluator."""
    from vision_core.export.onnx_export import ONNXModel

    run_dir = Path(run_dir)
    info, data = run_info(run_dir), load_npz(run_dir / "data.npz")
    eval_x = data["eval_x"]
    outputs = {"float keras": _keras_outputs(load_float_model(run_dir), eval_x)}
    qat_outputs = run_dir / "qat" / "eval_outputs.npz"
    if qat_outputs.is_file():
        outputs["qat keras"] = load_npz(qat_outputs)
    for form, path in forms.items():
        if form.endswith(".tflite"):
            outputs[form] = TFLiteModel(path)(eval_x)
        elif form.endswith(".onnx"):
            outputs[form] = ONNXModel(path)(eval_x)
    return compare(EVALUATORS[info.task](data["eval_y"]), outputs, reference="float keras",
                   agreement=AGREEMENT[info.task])


def _keras_outputs(model, x: np.ndarray) -> dict[str, np.ndarray]:
    outputs = model.predict(x, batch_size=32, verbose=0)
    return outputs if isinstance(outputs, dict) else {model.output_names[0]: outputs}
