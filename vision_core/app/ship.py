"""Shipping a trained run, for every task: QAT, every export form, and one table that scores them all.

``qat`` (:func:`run_qat`) fine-tunes the run's model with TF-MOT in a tf_keras child process
(:class:`vision_core.quant.qat_job.QATJobSpec`, settings from the config's ``qat`` section) and
writes ``<run>/qat/qat_int8.tflite`` (uint8 input, metadata) and ``<run>/qat/report.json``.

``export --format`` (:func:`export_run`) writes, into ``<run>/exports/``:

=============  ===========================================================================
form           files
=============  ===========================================================================
float32        ``<task>_float32.tflite``
float16        ``<task>_float16.tflite`` (fp16 weights)
int8           ``<task>_int8.tflite`` (post-training, uint8 input, audited all-int8) and,
               after ``qat``, ``<task>_int8_qat.tflite``
int16x8        ``<task>_int16x8.tflite`` (int16 activations, int8 weights)
saved_model    the next version of ``<saved-models>/<task>_<run>/`` (``serving_default`` on
               model inputs, ``serving_bytes`` on encoded images, both serving the outputs of
               ``Task.serving_postprocess``) and ``models.config``
onnx           ``<task>.onnx`` from the SavedModel (checked against Keras) and
               ``<task>_int8.onnx`` from the int8 TFLite file, QAT when there is one (checked
               against it to ``Task.int8_onnx_min_cosine``)
=============  ===========================================================================

``tflite`` names the four TFLite forms, ``all`` every form. Every TFLite file carries the
task's metadata (:meth:`Task.model_info`). Then :func:`score_forms` scores the float Keras
model and every written file with the task's evaluator and writes ``exports/forms.json``.

What a task adds (see :class:`vision_core.app.task.Task`): ``inference`` (the shipped
model, e.g. detection's post-process op), ``serving_postprocess`` (extra SavedModel outputs,
e.g. segmentation's class map), ``model_info``, ``representative_data``,
``qat_builder``, ``qat_loss``, ``qat_data`` and ``tflite_options``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vision_core.errors import AppError
from vision_core.logs import get_logger
from vision_core.storage.atomic import copy_atomic, write_atomic

if TYPE_CHECKING:
    from vision_core.app.config import Config
    from vision_core.app.task import Task
    from vision_core.backend import keras

log = get_logger()
TFLITE_FORMS = ("float32", "float16", "int8", "int16x8")
FORMS = (*TFLITE_FORMS, "saved_model", "onnx")
GROUPS = {"tflite": TFLITE_FORMS, "all": FORMS}
QAT_DIR = "qat"
QAT_FILE = "qat_int8.tflite"
FLOAT_ONNX_ATOL = 1e-4  # tf2onnx from a SavedModel matches Keras to float rounding (DESIGN.md)


def export_name(task: Task, run_dir: str | Path) -> str:
    """``<task>_<run folder>`` with ``-`` as ``_``: the SavedModel's and the metadata's model name."""
    return f"{task.name}_{Path(run_dir).name}".replace("-", "_").replace(".", "_")


def expand_forms(formats: list[str] | tuple[str, ...], offered: tuple[str, ...] = FORMS) -> list[str]:
    """``formats`` with the groups ``tflite`` / ``all`` expanded, in :data:`FORMS` order; unknown ones raise."""
    wanted: set[str] = set()
    for name in formats:
        members = GROUPS.get(name, (name,))
        unknown = [m for m in members if m not in FORMS]
        if unknown:
            raise AppError(f"unknown export format {name!r}: expected one of {', '.join((*FORMS, *GROUPS))}")
        wanted.update(m for m in members if m in offered)
    return [form for form in FORMS if form in wanted]


def calibration_batches(task: Task, config: Config) -> list[np.ndarray]:
    """The first ``qat.calibration_images`` images of the task's representative data, as batches."""
    count = config.qat.calibration_images
    batches, seen = [], 0
    for batch in task.representative_data(config, math.ceil(count / config.train.batch_size)):
        batches.append(np.asarray(batch, np.float32)[: count - seen])
        seen += len(batches[-1])
        if seen >= count:
            break
    if not batches:
        raise AppError(f"task {task.name!r}: no representative data to calibrate int8 with")
    return batches


def export_run(
    task: Task,
    model: keras.Model,
    config: Config,
    run_dir: str | Path,
    formats: list[str],
    saved_models: str | Path = "saved_models",
) -> dict[str, Path]:
    """Write the forms in ``formats`` (groups allowed) of the run's ``model``; ``{form: path}``."""
    from tflite.runtime import TFLiteModel
    from vision_core.export.onnx_export import (
        check_onnx,
        export_onnx_from_saved_model,
        export_onnx_from_tflite,
    )
    from vision_core.export.saved_model import export_saved_model
    from vision_core.export.serving_config import write_models_config
    from vision_core.export.tflite_export import export_tflite

    run_dir = Path(run_dir)
    out_dir = run_dir / "exports"
    forms = expand_forms(formats, task.export_formats)
    name = export_name(task, run_dir)
    info = task.model_info(config, name)
    shipped = task.inference_model(model, config)
    served = task.serving_postprocess(config)
    calibration = calibration_batches(task, config) if {"int8", "int16x8", "onnx"} & set(forms) else None
    integer_forms = [form for form in ("int8", "int16x8") if form in forms or (form == "int8" and "onnx" in forms)]
    integer_model = shipped
    if integer_forms and config.qat.weight_rounding != "nearest":
        integer_model = task.inference_model(rounded_weights(model, config, calibration), config)
    written: dict[str, Path] = {}
    for form in TFLITE_FORMS:
        if form in forms or (form == "int8" and "onnx" in forms):
            log.info("exporting %s TFLite", form)
            integer = form in integer_forms
            written[form] = export_tflite(
                integer_model if integer else shipped,
                out_dir / f"{task.name}_{form}.tflite",
                form,
                calibration if integer else None,
                info=info,
                **task.tflite_options,
            )
    qat_file = run_dir / QAT_DIR / QAT_FILE
    if "int8" in written and qat_file.is_file():
        written["int8_qat"] = copy_atomic(qat_file, out_dir / f"{task.name}_int8_qat.tflite")
    if "saved_model" in forms or "onnx" in forms:
        log.info("exporting the SavedModel to %s", saved_models)
        preprocess, decode_channels = task.serving_preprocess(config, info)
        serving = task.serving_model(model, shipped, config)
        written["saved_model"] = export_saved_model(
            serving,
            saved_models,
            name,
            preprocess=preprocess,
            postprocess=served,
            decode_channels=decode_channels,
            any_size=None in tuple(serving.inputs[0].shape[1:3]),
        )
        written["models_config"] = write_models_config(saved_models)
    if "onnx" in forms:
        log.info("exporting ONNX (from the SavedModel and from the int8 TFLite file)")
        probe = calibration[0][:1]
        written["onnx"] = export_onnx_from_saved_model(written["saved_model"], out_dir / f"{task.name}.onnx")
        reference = _outputs(serving, probe)
        reference = {k: np.asarray(v) for k, v in (served(reference) if served else reference).items()}
        check_onnx(written["onnx"], reference, probe, atol=FLOAT_ONNX_ATOL, only=task.float_onnx_outputs)
        int8 = written.get("int8_qat", written["int8"])
        written["int8_onnx"] = export_onnx_from_tflite(int8, out_dir / f"{task.name}_int8.onnx")
        if task.int8_onnx_min_cosine is not None:
            check_onnx(written["int8_onnx"], TFLiteModel(int8)(probe), probe, min_cosine=task.int8_onnx_min_cosine)
    return written


def rounded_weights(model: keras.Model, config: Config, calibration: list[np.ndarray]) -> keras.Model:
    """``model``, or with ``qat.weight_rounding: gptq`` a copy whose kernels are GPTQ-rounded on the
    calibration images (:func:`vision_core.quant.gptq.gptq_rounded`)."""
    if config.qat.weight_rounding != "gptq":
        return model
    from vision_core.quant.gptq import gptq_rounded

    rounded, report = gptq_rounded(model, calibration)
    for layer, errors in report.items():
        share = errors["gptq"] / max(errors["nearest"], 1e-30)
        log.info("GPTQ %s: output error %.3g of nearest rounding's", layer, share)
    return rounded


def _outputs(model: keras.Model, batch: np.ndarray) -> dict[str, Any]:
    from vision_core.quant.convert import output_dict

    return output_dict(model, model(batch, training=False))


def scored_files(written: dict[str, Path]) -> dict[str, Path]:
    """The written forms an evaluator can run: ``{file name: path}`` of the ``.tflite`` / ``.onnx`` files."""
    return {Path(p).name: Path(p) for p in written.values() if Path(p).suffix in (".tflite", ".onnx")}


def score_forms(
    task: Task, model: keras.Model, config: Config, files: dict[str, Path], out_path: str | Path
) -> list[dict[str, Any]]:
    """Score the float Keras ``model`` and every file with the task's evaluator; write the rows to ``out_path``.

    Rows (:meth:`Task.compare_forms`) hold each scalar metric and its delta to the float model.
    """
    log.info("scoring %d forms with the %s evaluator", len(files) + 1, task.name)
    rows = task.compare_forms({"float keras": model, **files}, config)
    write_atomic(out_path, json.dumps(rows, indent=2, default=float).encode())
    log.info("same evaluator, every form:\n%s", format_rows(rows))
    return rows


def compare_metrics(metrics: dict[str, dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """One row per form: its scalar metrics and each float one's ``<metric>_delta`` to ``reference``'s
    (integers are counts, such as the images scored: kept without a delta)."""
    rows = []
    for form, values in metrics.items():
        row: dict[str, Any] = {"form": form}
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key] = value
                if isinstance(value, float) and isinstance(metrics[reference].get(key), float):
                    row[f"{key}_delta"] = value - metrics[reference][key]
        rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of :func:`compare_metrics` rows (4 decimals)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def run_qat(task: Task, model: keras.Model, config: Config, run_dir: str | Path) -> dict[str, Any]:
    """Fine-tune the run's float ``model`` with fake quantization (config ``qat``) and write
    ``<run>/qat/qat_int8.tflite``; score it and the float model with the task's evaluator into
    ``<run>/qat/report.json``. Returns the report without the job's details."""
    from vision_core.quant.qat_job import QATJobSpec, launch
    from vision_core.storage.weights import weights_by_path

    settings, run_dir = config.qat, Path(run_dir)
    builder, kwargs = task.qat_builder(config)
    loss, loss_options = (
        (task.qat_distillation_loss(config), {})
        if settings.fine_tune_target == "distillation"
        else task.qat_loss(config)
    )
    inference, inference_options = task.inference(config) or (None, {})
    info = task.model_info(config, export_name(task, run_dir))
    spec = QATJobSpec(
        builder,
        kwargs,
        steps=settings.steps,
        batch_size=settings.fine_tune_batch,
        learning_rate=settings.fine_tune_lr,
        loss=loss,
        loss_options=loss_options,
        freeze_batch_norm=settings.freeze_batch_norm,
        calibration_ranges=settings.calibration_ranges,
        metadata=dataclasses.asdict(info),
        inference=inference,
        inference_options=inference_options,
        tflite_options=task.tflite_options,
        out_dir=".",
    )
    qat_dir = run_dir / QAT_DIR
    images = max(1, min(settings.fine_tune_images, settings.steps * settings.fine_tune_batch))
    calibration = calibration_batches(task, config)
    data = {"calibration": np.concatenate(calibration), **task.qat_data(config, images)}
    start = rounded_weights(model, config, calibration)
    spec_path = spec.write(qat_dir, weights_by_path(start), data)
    log.info(
        "QAT: %d steps of batch %d (%s) in a tf_keras process (%s)",
        settings.steps,
        settings.fine_tune_batch,
        settings.fine_tune_target,
        qat_dir,
    )
    job = launch(spec_path)
    (qat_dir / spec.data).unlink()
    rows = task.compare_forms({"float keras": model, QAT_FILE: qat_dir / QAT_FILE}, config)
    headline = task.headline_metric
    losses = job.get("losses") or [None]
    report = {
        "qat_int8": str(qat_dir / QAT_FILE),
        "steps": settings.steps,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "forms": rows,
        f"delta_{headline}": rows[1].get(f"{headline}_delta"),
        "job": job,
    }
    write_atomic(qat_dir / "report.json", json.dumps(report, indent=2, default=float).encode())
    log.info("QAT int8 against float:\n%s", format_rows(rows))
    return {k: v for k, v in report.items() if k != "job"}
