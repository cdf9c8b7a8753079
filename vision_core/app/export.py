"""The default ``export`` command of a task: SavedModel from its signatures, float and int8 TFLite.

Forms (``--format``): ``saved_model`` (``exports/saved_model/``: the task's
:meth:`~vision_core.app.task.Task.export_signatures`), ``tflite`` (``exports/<task>_float32.tflite``)
and ``int8`` (``exports/<task>_int8.tflite``: full-integer PTQ calibrated on the task's
representative data, audited op by op by :func:`vision_core.quant.convert.convert`).
Tasks with their own export (a detector's post-process tail) override ``Task.export``.
"""

from __future__ import annotations

from pathlib import Path

from vision_core.atomic import write_atomic, write_dir_atomic

FORMATS = ("saved_model", "tflite", "int8")


def export_model(task, model, config, out_dir: str | Path, formats: list[str] | tuple[str, ...]) -> dict[str, Path]:
    """Write each of ``formats`` (see :data:`FORMATS`; ``all`` = every one) to ``out_dir``; ``{form: path}``."""
    from vision_core.backend import tf
    from vision_core.quant.convert import convert, save_signatures

    out_dir = Path(out_dir)
    formats = FORMATS if "all" in formats else tuple(formats)
    written: dict[str, Path] = {}
    if "saved_model" in formats:
        signatures = {endpoint: tf.function(function, input_signature=signature).get_concrete_function()
                      for endpoint, (function, signature) in task.export_signatures(model, config).items()}
        written["saved_model"] = write_dir_atomic(out_dir / "saved_model",
                                                  lambda staging: save_signatures(model, staging, signatures))
    if "tflite" in formats:
        written["tflite"] = write_atomic(out_dir / f"{task.name}_float32.tflite", convert(model, "float32"))
    if "int8" in formats:
        data = convert(model, "int8", lambda: task.representative_data(config))
        written["int8"] = write_atomic(out_dir / f"{task.name}_int8.tflite", data)
    return written
