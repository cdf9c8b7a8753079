"""QAT in its own process: float Keras 3 weights in, fake-quantized model and int8 TFLite out.

TF-MOT needs the tf_keras flavour, which must be chosen before TensorFlow is imported,
so a Keras 3 process hands QAT to a child process through a JSON spec::

    {
      "builder": "vision_core.backbones:build_backbone",   # module:function building the model
      "kwargs": {"name": "resnet18", "input_shape": [64, 64, 3], "num_classes": 4},
      "weights": "float.npz",              # weights_by_path() of the float Keras 3 model
      "data": "data.npz",                  # calibration [N,H,W,C] float32; optional train_x and
                                           #   its targets: train_y (class ids) or target.<name>
                                           #   arrays, probe_x (twin check) and eval_x (the QAT
                                           #   model's outputs for the report)
      "calibration_ranges": "batch_mean",  # optional: each activation range from the mean of the
                                           #   calibration batches' min/max (default) or "min_max"
                                           #   over all of them (vision_core.quant.qat.calibrate_ranges)
      "steps": 100, "batch_size": 16, "learning_rate": 1e-4,
      "freeze_batch_norm": true,           # optional: batch norms keep the float statistics, scale
                                           #   and offset during the fine-tune (default); false
                                           #   trains them as in float training
      "eager": false,                      # optional: run the fine-tune steps eagerly (true) or as
                                           #   a traced tf.function (false); default: eager below
                                           #   EAGER_STEPS steps
      "loss": "sparse_categorical_crossentropy_from_logits",   # (train_y) or
                                           #   "distillation_kl_from_logits" (target.teacher_logits:
                                           #   the float model's logits on train_x; the job computes
                                           #   them from the float model when the data has none) or
                                           #   "module:function" taking (targets: dict, outputs:
                                           #   dict, **loss_options) -> scalar tensor
      "loss_options": {...},               # optional keyword arguments of a module:function loss
      "exporter": "module:function",       # optional: (qat_model, path, calibration batches,
                                           #   ModelInfo, **exporter_options) -> path of the int8
                                           #   file (a detector appends its post-process op);
                                           #   needs "metadata"
      "exporter_options": {...},           # optional keyword arguments of the exporter
      "out_dir": "qat",                    # qat_int8.tflite, qat.weights.npz (per-channel scales
                                           #   folded, vision_core.quant.fold), probe.npz,
                                           #   eval_outputs.npz, result.json
      "quantize": true,                    # false: build, load and probe the tf_keras twin only
      "metadata": {...}                    # optional tflite.metadata.ModelInfo fields: the int8
                                           #   file is then a shippable export (uint8 input,
                                           #   probabilities, metadata; see export_tflite)
    }

``launch(spec_path)`` runs ``python -m vision_core.quant.qat_job spec.json`` in the
tf_keras flavour and returns the child's ``result.json``.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LOSSES = ("sparse_categorical_crossentropy_from_logits", "distillation_kl_from_logits")
RANGE_STATISTICS = ("batch_mean", "min_max")  # how calibration batches set QAT ranges (qat.calibrate_ranges)
# Tracing a QAT model's train step costs about as much as 20 eager steps on a CPU (SSDLite-
# MobileNetV2-0.35 at 96 px, batch 4: 2 steps took 4.6 s eagerly, 44.9 s traced, same losses),
# so shorter fine-tunes run eagerly.
EAGER_STEPS = 20


def launch(spec_path: str | Path, timeout: float | None = None) -> dict:
    """Run the QAT job described by ``spec_path`` in a tf_keras child process."""
    from vision_core.backend import TF_KERAS, flavour_environment

    spec_path = Path(spec_path)
    process = subprocess.run([sys.executable, "-m", "vision_core.quant.qat_job", str(spec_path)],
                             env=flavour_environment(TF_KERAS), capture_output=True, text=True, timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"QAT job {spec_path} failed (exit {process.returncode}):\n{process.stderr[-4000:]}")
    spec = json.loads(spec_path.read_text())
    return json.loads((spec_path.parent / spec["out_dir"] / "result.json").read_text())


def _imported(path: str):
    module_name, _, function = path.partition(":")
    return getattr(importlib.import_module(module_name), function)


def _build(spec: dict):
    return _imported(spec["builder"])(**spec["kwargs"])


def _loss(name: str, options: dict | None = None):
    """``loss(targets: dict, outputs: dict) -> scalar``, by name or ``module:function`` (with ``options``)."""
    from vision_core.backend import keras

    if ":" in name:
        function = _imported(name)
        return lambda targets, outputs: function(targets, outputs, **(options or {}))
    if name not in LOSSES:
        raise ValueError(f"unknown QAT loss {name!r}: expected one of {', '.join(LOSSES)} or module:function")
    if name == "distillation_kl_from_logits":
        return lambda targets, outputs: distillation_kl(targets["teacher_logits"], next(iter(outputs.values())))
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return lambda targets, outputs: cross_entropy(targets["label"], next(iter(outputs.values())))


def distillation_kl(teacher_logits, student_logits):
    """Mean KL(teacher || student) of the two softmax distributions: 0 when the QAT model
    predicts what the float model does, so the fine-tune only corrects quantization error
    (class labels pull it toward the training labels and move held-out predictions)."""
    from vision_core.backend import tf

    teacher_log_probs = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32))
    student_log_probs = tf.nn.log_softmax(tf.cast(student_logits, tf.float32))
    return tf.reduce_mean(tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), -1))


def _targets(data: dict) -> dict[str, np.ndarray]:
    """The loss's targets: ``label`` (train_y) and every ``target.<name>`` array as ``<name>``."""
    targets = {"label": data["train_y"]} if "train_y" in data else {}
    return {**targets, **{key.removeprefix("target."): value for key, value in data.items()
                          if key.startswith("target.")}}


def _fine_tune(qat_model, data: dict, loss_fn, steps: int, batch_size: int, learning_rate: float,
               eager: bool) -> list:
    """``steps`` Adam steps over ``train_x`` and its targets in order, wrapping around; the losses.

    ``eager``: run each step eagerly instead of tracing the step into a tf.function first.
    """
    from vision_core.backend import keras, tf

    optimizer = keras.optimizers.Adam(learning_rate)
    x, targets = data["train_x"], _targets(data)

    def train_step(images, batch_targets):
        with tf.GradientTape() as tape:
            outputs = qat_model(images, training=True)
            outputs = outputs if isinstance(outputs, dict) else {"output": outputs}
            loss = loss_fn(batch_targets, outputs) + sum(qat_model.losses)
        variables = qat_model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    if not eager:
        train_step = tf.function(train_step)
    history = []
    for step in range(steps):
        index = np.arange(step * batch_size, (step + 1) * batch_size) % len(x)
        history.append(float(train_step(x[index], {k: v[index] for k, v in targets.items()})))
    return history


def run(spec_path: str | Path) -> dict:
    """The child's work (tf_keras flavour): twin check, QAT, fine-tune, int8 conversion."""
    from tflite.audit import op_summary, require_int8
    from tflite.metadata import ModelInfo
    from vision_core.atomic import write_atomic
    from vision_core.backend import is_keras3
    from vision_core.quant.convert import convert
    from vision_core.quant.fold import fold_for_int8
    from vision_core.quant.qat import (calibrate_ranges, freeze_batch_norms, quantize_model, set_input_range,
                                       tie_same_scale_ranges)
    from vision_core.weights import assign_by_path, load_npz, save_npz, weights_by_path

    if is_keras3():
        raise RuntimeError("the QAT job must run in the tf_keras flavour (use qat_job.launch)")
    spec_path = Path(spec_path)
    spec = json.loads(spec_path.read_text())
    base = spec_path.parent
    out_dir = base / spec["out_dir"]
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_npz(base / spec["data"])

    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[phase] = round(now - clock, 2)
        clock = now

    model = _build(spec)
    assign_by_path(model, load_npz(base / spec["weights"]))
    result: dict = {"model": model.name}
    if "probe_x" in data:
        outputs = model(data["probe_x"], training=False)
        outputs = outputs if isinstance(outputs, dict) else {"output": outputs}
        save_npz({k: np.asarray(v) for k, v in outputs.items()}, out_dir / "probe.npz")
    lap("build_and_load")
    if not spec.get("quantize", True):
        result["seconds"] = seconds
        write_atomic(out_dir / "result.json", json.dumps(result, indent=2).encode())
        return result

    model, result["folded"] = fold_for_int8(model)  # the same function, fewer int8 roundings
    batch_size = int(spec.get("batch_size", 16))
    steps = int(spec.get("steps", 0))
    loss_name = spec.get("loss", LOSSES[0])
    if steps and loss_name == "distillation_kl_from_logits" and "target.teacher_logits" not in data:
        teacher_logits = model.predict(data["train_x"], batch_size=batch_size, verbose=0)
        if isinstance(teacher_logits, dict):
            raise ValueError(f"{spec_path}: distillation_kl_from_logits distils a single-output classifier, "
                             f"{model.name} has outputs {sorted(teacher_logits)}")
        data["target.teacher_logits"] = teacher_logits
        lap("teacher_logits")
    qat_model = quantize_model(model)
    calibration = data["calibration"]
    batches = [calibration[i:i + batch_size] for i in range(0, len(calibration), batch_size)]
    lap("quantize_model")
    result["calibrated_ranges"] = calibrate_ranges(qat_model, model, batches,
                                                   spec.get("calibration_ranges", "batch_mean"))
    info = ModelInfo(**spec["metadata"]) if "metadata" in spec else None
    if info is not None:  # a uint8 export's input range is the pixel range; train with it
        set_input_range(qat_model, *info.input_range)
    tie_same_scale_ranges(qat_model)  # to the calibrated ranges
    lap("calibrate")

    if steps:
        if spec.get("freeze_batch_norm", True):
            result["frozen_batch_norms"] = freeze_batch_norms(qat_model)
        loss_fn = _loss(loss_name, spec.get("loss_options"))
        result["eager"] = bool(spec.get("eager", steps < EAGER_STEPS))
        result["losses"] = _fine_tune(qat_model, data, loss_fn, steps, batch_size,
                                      float(spec.get("learning_rate", 1e-4)), result["eager"])
        if info is not None:  # fine-tuning moved it with the data's range
            set_input_range(qat_model, *info.input_range)
        lap("fine_tune")

    result["tied_ranges"] = tie_same_scale_ranges(qat_model)
    save_npz(weights_by_path(qat_model), out_dir / "qat.weights.npz")
    if "eval_x" in data:
        outputs = qat_model.predict(data["eval_x"], batch_size=batch_size, verbose=0)
        outputs = outputs if isinstance(outputs, dict) else {model.output_names[0]: outputs}
        save_npz({k: np.asarray(v) for k, v in outputs.items()}, out_dir / "eval_outputs.npz")
        lap("evaluate")
    if info is not None:
        exporter = _imported(spec["exporter"]) if "exporter" in spec else _export_classifier
        flatbuffer = exporter(qat_model, out_dir / "qat_int8.tflite", batches, info,
                              **spec.get("exporter_options", {})).read_bytes()
        records = require_int8(flatbuffer, source=f"{model.name} (QAT int8)")
    else:
        flatbuffer = convert(qat_model, "int8", batches)
        records = require_int8(flatbuffer, source=f"{model.name} (QAT int8)")
        write_atomic(out_dir / "qat_int8.tflite", flatbuffer)
    result["ops"] = [list(row) for row in op_summary(records)]
    result["tflite_bytes"] = len(flatbuffer)
    lap("convert")
    result["seconds"] = seconds
    write_atomic(out_dir / "result.json", json.dumps(result, indent=2).encode())
    return result


def _export_classifier(qat_model, path: Path, batches: list, info) -> Path:
    from vision_core.export.tflite_export import export_tflite

    return export_tflite(qat_model, path, "int8", batches, info=info)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m vision_core.quant.qat_job SPEC.json  (run it through qat_job.launch)")
    run(sys.argv[1])
