"""The shared app framework: every task app (detect, segment, classify, superres, lanes) plugs a
:class:`Task` into one CLI (:func:`main`) and one Keras ``fit`` trainer (:func:`train`).

Files: ``task.py`` (the Task surface), ``config.py`` (typed configs, presets, YAML/flag
overrides, :class:`TrainConfig`), ``cli.py`` (the command grammar), ``trainer.py`` (fit,
resume), ``callbacks.py`` (NaN guard, EMA, evaluation, logs, checkpoints), ``schedules.py``
(optimizer, warm-up + cosine/step decay), ``distribute.py`` (strategies, mixed precision),
``runs.py`` (run folders), ``plots.py``, ``export.py``, ``bench.py``, ``errors.py``.
"""

from vision_core.app.cli import main
from vision_core.app.config import TrainConfig, setting
from vision_core.app.errors import AppError, ConfigError, NotSupported, TrainingDiverged
from vision_core.app.task import Task
from vision_core.app.trainer import train

__all__ = ["AppError", "ConfigError", "NotSupported", "Task", "TrainConfig", "TrainingDiverged", "main",
           "setting", "train"]
