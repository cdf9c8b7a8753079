"""The shared app framework: every task app (detect, segment, classify, superres, lanes) plugs a
:class:`Task` into one CLI (:func:`main`) and one Keras ``fit`` trainer (:func:`train`).

Files: ``task.py`` (the Task surface), ``config.py`` (typed configs, presets, YAML/flag
overrides, :class:`TrainConfig`), ``cli.py`` (the command grammar), ``trainer.py`` (fit,
resume), ``callbacks.py`` (NaN guard, EMA, evaluation, logs, checkpoints), ``schedules.py``
(optimizer, warm-up + cosine/step decay), ``distribute.py`` (strategies, mixed precision),
``runs.py`` (run folders), ``plots.py``, ``export.py``, ``bench.py``, ``errors.py``.

Import from the modules themselves (``from vision_core.app.cli import main``): this package
imports nothing, so a tf_keras process (the QAT job) can read a task's config dataclasses
without loading the Keras 3 trainer.
"""
