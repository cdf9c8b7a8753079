"""QAT in its own process: float Keras 3 weights in, fake-quantized model and int8 TFLite out.

TF-MOT needs the tf_keras flavour, which must be chosen before TensorFlow is imported,
so a Keras 3 process hands QAT to a child process through one typed spec,
:class:`QATJobSpec`, written as ``spec.json`` beside its data (:meth:`QATJobSpec.write`)
and read back by the child (:meth:`QATJobSpec.read`). The folder holds::

    spec.json            the QATJobSpec
    <weights>            weights_by_path() of the float Keras 3 model
    <data>               calibration [N,H,W,C] float32; optional train_x and its targets:
                         train_y (class ids) or target.<name> arrays, probe_x (twin check)
                         and eval_x (the QAT model's outputs for the report)
    <out_dir>/           qat_int8.tflite, qat.weights.npz (per-channel scales folded,
                         vision_core.quant.fold), probe.npz, eval_outputs.npz, result.json

``launch(spec_path)`` runs ``python -m vision_core.quant.qat_job spec.json`` in the
tf_keras flavour and returns the child's ``result.json``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# Distillation losses fit the float model's outputs (``target.teacher_logits``, computed by the job when absent):
# softmax KL for one class per image, per-label binary KL for a multi-label (sigmoid) head.
DISTILLATION_LOSSES = ("distillation_kl_from_logits", "distillation_binary_kl_from_logits")
LOSSES = ("sparse_categorical_crossentropy_from_logits", *DISTILLATION_LOSSES)
RANGE_STATISTICS = ("batch_mean", "min_max")  # how calibration batches set QAT ranges (qat.calibrate_ranges)
# Tracing a QAT model's train step costs about as much as 20 eager steps on a CPU (SSDLite-
# MobileNetV2-0.35 at 96 px, batch 4: 2 steps took 4.6 s eagerly, 44.9 s traced, same losses),
# so shorter fine-tunes run eagerly.
EAGER_STEPS = 20


@dataclasses.dataclass
class QATJobSpec:
    """What the QAT child does; file names are relative to the spec's folder.

    ``builder`` (``module:function``) with ``kwargs`` builds the float model in the tf_keras
    flavour. ``loss``: one of :data:`LOSSES` (the :data:`DISTILLATION_LOSSES` distil the float
    model's logits, computed by the job when the data hold no ``target.teacher_logits``:
    ``distillation_kl_from_logits`` of a softmax classifier, ``distillation_binary_kl_from_logits``
    of a multi-label sigmoid one) or a
    ``module:function`` taking ``(targets: dict, outputs: dict, **loss_options) -> scalar``.
    ``calibration_ranges``: one of :data:`RANGE_STATISTICS`
    (:func:`vision_core.quant.qat.calibrate_ranges`). ``freeze_batch_norm``: batch norms keep
    the float statistics, scale and offset during the fine-tune. ``eager``: run the steps
    eagerly (None: eagerly below :data:`EAGER_STEPS`). ``quantize=False``: build, load and probe
    the tf_keras twin only. ``metadata``: :class:`tflite.metadata.ModelInfo` fields; with it the
    int8 file is a shippable export (uint8 input, metadata; ``tflite_options`` go to
    :func:`vision_core.export.tflite_export.export_tflite`), after ``inference``
    (``module:function`` taking ``(model, **inference_options)``) turns the QAT model into the
    shipped one (a detector appends its post-process op).
    """

    builder: str
    kwargs: dict[str, Any]
    steps: int = 0
    batch_size: int = 16
    learning_rate: float = 1e-4
    loss: str = LOSSES[0]
    loss_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    freeze_batch_norm: bool = True
    calibration_ranges: str = "batch_mean"
    eager: bool | None = None
    quantize: bool = True
    metadata: dict[str, Any] | None = None
    inference: str | None = None
    inference_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    tflite_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    weights: str = "float.weights.npz"
    data: str = "data.npz"
    out_dir: str = "qat"

    def __post_init__(self):
        if self.calibration_ranges not in RANGE_STATISTICS:
            raise ValueError(f"calibration_ranges {self.calibration_ranges!r}: expected one of {RANGE_STATISTICS}")
        if ":" not in self.loss and self.loss not in LOSSES:
            raise ValueError(f"unknown QAT loss {self.loss!r}: expected one of {', '.join(LOSSES)} or module:function")

    def write(self, folder: str | Path, weights: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> Path:
        """Write the float ``weights``, the ``data`` arrays and ``spec.json`` into ``folder``; the spec's path."""
        from vision_core.storage.atomic import write_atomic
        from vision_core.storage.weights import save_npz

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_npz(weights, folder / self.weights)
        save_npz(data, folder / self.data)
        return write_atomic(folder / "spec.json", json.dumps(dataclasses.asdict(self), indent=2).encode())

    @classmethod
    def read(cls, spec_path: str | Path) -> QATJobSpec:
        """The spec written by :meth:`write`; ``ValueError`` naming the file and the unknown keys."""
        spec_path = Path(spec_path)
        fields = json.loads(spec_path.read_text())
        unknown = set(fields) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{spec_path}: unknown QAT spec keys {sorted(unknown)}")
        return cls(**fields)


def launch(spec_path: str | Path, timeout: float | None = None) -> dict:
    """Run the QAT job described by ``spec_path`` in a tf_keras child process."""
    from vision_core.backend import TF_KERAS, flavour_environment

    spec_path = Path(spec_path)
    process = subprocess.run(
        [sys.executable, "-m", "vision_core.quant.qat_job", str(spec_path)],
        env=flavour_environment(TF_KERAS),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if process.returncode != 0:
        raise RuntimeError(f"QAT job {spec_path} failed (exit {process.returncode}):\n{process.stderr[-4000:]}")
    return json.loads((spec_path.parent / QATJobSpec.read(spec_path).out_dir / "result.json").read_text())


def imported(path: str):
    """The object a ``module:attribute`` path names."""
    module_name, _, function = path.partition(":")
    return getattr(importlib.import_module(module_name), function)


def _loss(name: str, options: dict | None = None):
    """``loss(targets: dict, outputs: dict) -> scalar``, by name or ``module:function`` (with ``options``)."""
    from vision_core.backend import keras

    if ":" in name:
        function = imported(name)
        return lambda targets, outputs: function(targets, outputs, **(options or {}))
    if name not in LOSSES:
        raise ValueError(f"unknown QAT loss {name!r}: expected one of {', '.join(LOSSES)} or module:function")
    if name in DISTILLATION_LOSSES:
        divergence = distillation_kl if name == "distillation_kl_from_logits" else distillation_binary_kl
        return lambda targets, outputs: divergence(targets["teacher_logits"], next(iter(outputs.values())))
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


def distillation_binary_kl(teacher_logits, student_logits):
    """Mean over images and labels of KL(teacher || student) of each label's Bernoulli distribution, the
    probabilities being the sigmoids of the logits: a multi-label classifier's distillation.

    It is the binary cross-entropy of the student's sigmoid against the teacher's probabilities minus the
    teacher's own entropy: the same gradient, and 0 when the QAT model predicts what the float model does.
    A softmax KL would couple the labels, which a sigmoid head scores independently.
    """
    from vision_core.backend import tf

    teacher, student = tf.cast(teacher_logits, tf.float32), tf.cast(student_logits, tf.float32)
    # BCE(p, s) - H(p) with p = sigmoid(t): softplus(s) - p * s - (softplus(t) - p * t)
    return tf.reduce_mean(tf.nn.softplus(student) - tf.nn.softplus(teacher) - tf.sigmoid(teacher) * (student - teacher))


def _targets(data: dict) -> dict[str, np.ndarray]:
    """The loss's targets: ``label`` (train_y) and every ``target.<name>`` array as ``<name>``."""
    targets = {"label": data["train_y"]} if "train_y" in data else {}
    return {
        **targets,
        **{key.removeprefix("target."): value for key, value in data.items() if key.startswith("target.")},
    }


def _fine_tune(qat_model, data: dict, loss_fn, steps: int, batch_size: int, learning_rate: float, eager: bool) -> list:
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
    from vision_core.backend import is_keras3
    from vision_core.quant.convert import convert
    from vision_core.quant.fold import fold_for_int8
    from vision_core.quant.qat import (
        calibrate_ranges,
        freeze_batch_norms,
        quantize_model,
        set_input_range,
        tie_same_scale_ranges,
    )
    from vision_core.storage.atomic import write_atomic
    from vision_core.storage.weights import (
        assign_by_path,
        load_npz,
        save_npz,
        weights_by_path,
    )

    if is_keras3():
        raise RuntimeError("the QAT job must run in the tf_keras flavour (use qat_job.launch)")
    spec_path = Path(spec_path)
    spec = QATJobSpec.read(spec_path)
    base = spec_path.parent
    out_dir = base / spec.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_npz(base / spec.data)

    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[phase] = round(now - clock, 2)
        clock = now

    model = imported(spec.builder)(**spec.kwargs)
    assign_by_path(model, load_npz(base / spec.weights))
    result: dict = {"model": model.name}
    if "probe_x" in data:
        outputs = model(data["probe_x"], training=False)
        outputs = outputs if isinstance(outputs, dict) else {"output": outputs}
        save_npz({k: np.asarray(v) for k, v in outputs.items()}, out_dir / "probe.npz")
    lap("build_and_load")
    if not spec.quantize:
        result["seconds"] = seconds
        write_atomic(out_dir / "result.json", json.dumps(result, indent=2).encode())
        return result

    model, result["folded"] = fold_for_int8(model)  # the same function, fewer int8 roundings
    batch_size, steps, loss_name = spec.batch_size, spec.steps, spec.loss
    if steps and loss_name in DISTILLATION_LOSSES and "target.teacher_logits" not in data:
        teacher_logits = model.predict(data["train_x"], batch_size=batch_size, verbose=0)
        if isinstance(teacher_logits, dict):
            raise ValueError(
                f"{spec_path}: {loss_name} distils a single-output classifier, "
                f"{model.name} has outputs {sorted(teacher_logits)}"
            )
        data["target.teacher_logits"] = teacher_logits
        lap("teacher_logits")
    qat_model = quantize_model(model)
    calibration = data["calibration"]
    batches = [calibration[i : i + batch_size] for i in range(0, len(calibration), batch_size)]
    lap("quantize_model")
    result["calibrated_ranges"] = calibrate_ranges(qat_model, model, batches, spec.calibration_ranges)
    info = ModelInfo(**spec.metadata) if spec.metadata is not None else None
    if info is not None:  # a uint8 export's input range is the pixel range; train with it
        set_input_range(qat_model, *info.input_range)
    tie_same_scale_ranges(qat_model)  # to the calibrated ranges
    lap("calibrate")

    if steps:
        if spec.freeze_batch_norm:
            result["frozen_batch_norms"] = freeze_batch_norms(qat_model)
        loss_fn = _loss(loss_name, spec.loss_options)
        result["eager"] = steps < EAGER_STEPS if spec.eager is None else spec.eager
        result["losses"] = _fine_tune(qat_model, data, loss_fn, steps, batch_size, spec.learning_rate, result["eager"])
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
        from vision_core.export.tflite_export import export_tflite

        shipped = imported(spec.inference)(qat_model, **spec.inference_options) if spec.inference else qat_model
        flatbuffer = export_tflite(
            shipped, out_dir / "qat_int8.tflite", "int8", batches, info=info, **spec.tflite_options
        ).read_bytes()
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


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m vision_core.quant.qat_job SPEC.json  (run it through qat_job.launch)")
    run(sys.argv[1])
