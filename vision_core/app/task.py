"""The Task: the small surface a task app (detect, segment, classify, superres, lanes) supplies.

The shared CLI (:mod:`vision_core.app.cli`) and trainer (:mod:`vision_core.app.trainer`)
drive every app only through this class, so ``train``, ``eval``, ``predict``, ``qat``,
``export``, ``bench`` and ``data`` mean the same thing everywhere. An app subclasses
:class:`Task`, sets the class attributes and implements the four abstract methods; the
other methods have working defaults or raise :class:`NotSupported`.

Config: ``presets`` maps preset names to instances of the app's config dataclass (the
first is the default). The dataclass must have a ``train`` field holding a
:class:`vision_core.app.config.TrainConfig`; its other fields (model, data, ...) are the
app's own, declared with :func:`vision_core.app.config.setting` so ``--help`` explains them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vision_core.app.errors import NotSupported
from vision_core.app.export import FORMATS
from vision_core.backend import keras, tf

Signatures = dict[str, tuple[Callable, list]]


class Task(abc.ABC):
    """One vision task as the CLI and trainer see it.

    Class attributes:
        name: the app's name (``"detect"``); runs go to ``runs/<name>/``.
        description: one line for ``--help``.
        presets: ``{preset name: config instance}``; the first is the default.
        headline_metric: the key of :meth:`evaluate`'s dict that ranks checkpoints (``"mAP"``);
            during training it is read as ``val_<key>`` from the epoch's logs, which hold the
            Keras validation metrics and, every ``train.eval_interval`` epochs, the evaluator's.
        headline_mode: ``"max"`` (higher is better) or ``"min"``.
        export_formats: the forms ``export --format`` offers (those :meth:`export` writes).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    presets: ClassVar[Mapping[str, Any]]
    headline_metric: ClassVar[str]
    headline_mode: ClassVar[str] = "max"
    export_formats: ClassVar[tuple[str, ...]] = FORMATS

    @abc.abstractmethod
    def build_model(self, config) -> keras.Model:
        """The float Keras model (built inside the trainer's ``strategy.scope()``)."""

    @abc.abstractmethod
    def datasets(self, config) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        """``(train, val)``: batched ``(inputs, targets)`` datasets of ``config.train.batch_size``.

        ``train`` is one epoch (finite, known cardinality, or set ``train.steps_per_epoch``).
        Shuffle with ``reshuffle_each_iteration`` and no explicit seed: the trainer seeds the
        global generator first, and on resume replays the shuffle order of the skipped epochs.
        """

    @abc.abstractmethod
    def compile_args(self, config) -> dict[str, Any]:
        """Keyword arguments of ``model.compile`` except the optimizer: ``loss``, ``metrics``, ..."""

    @abc.abstractmethod
    def evaluate(self, model, config) -> dict[str, float]:
        """Score ``model`` on the val set: a Keras model, or the path of an exported form (``eval --model``).

        Returns the task's metrics, including :attr:`headline_metric`.
        """

    def validate(self, config) -> None:
        """Check what the settings point at before ``train`` makes a run folder; raise
        :class:`~vision_core.app.errors.AppError` naming the problem (a missing file, an unreadable split).

        Default: nothing (types and section bounds are checked when the config is resolved). It should
        build nothing heavy; what it loads may be cached for :meth:`datasets`.
        """

    def plots(self, model, config, metrics: dict, out_dir: Path, suffix: str = "") -> dict[str, Path]:
        """Pictures of an evaluation written to ``out_dir``: ``{plot name: path}``; default none.

        ``metrics`` is :meth:`evaluate`'s dict for ``model`` (a Keras model, or an exported form's
        path). Each file is named ``<plot name><suffix>.png``: ``eval --model FILE`` passes
        ``_<FILE's name>`` so scoring several forms into one run folder keeps every picture.
        Called by ``eval`` and at the end of ``train`` (the best weights, into the run folder).
        """
        return {}

    def predict(self, model, sources: list[str], config, out_dir: Path) -> dict[str, Any]:
        """Run ``model`` (Keras, or an exported file's path) on image/video files or folders; drawn outputs to ``out_dir``."""
        raise NotSupported(f"task {self.name!r} does not implement predict")

    def representative_data(self, config, batches: int = 8) -> Iterable[np.ndarray]:
        """Float32 model-input batches for int8 calibration; default: the first val batches."""
        _, val = self.datasets(config)
        for inputs, _targets in val.take(batches):
            yield np.asarray(inputs, np.float32)

    def export_signatures(self, model, config) -> Signatures:
        """``{endpoint: (function, input_signature)}`` of the SavedModel; default ``serving_default``.

        The default takes one float32 ``image`` batch of the model's input shape and returns
        the model's outputs by name.
        """
        from vision_core.quant.convert import input_spec, output_dict

        def serve(image):
            return output_dict(model, model(image, training=False))

        return {"serving_default": (serve, [input_spec(model, batch_size=None)])}

    def check_data(self, config) -> dict[str, Any]:
        """Validate the datasets up front; default: count the batches and samples of train and val."""
        report = {}
        for split, dataset in zip(("train", "val"), self.datasets(config)):
            batches = samples = 0
            for inputs, _targets in dataset:
                batches += 1
                samples += int(tf.shape(tf.nest.flatten(inputs)[0])[0])
            report[split] = {"batches": batches, "samples": samples}
        return report

    def export(self, model, config, out_dir: Path, formats: list[str]) -> dict[str, Path]:
        """Write the shipped forms; default :func:`vision_core.app.export.export_model`."""
        from vision_core.app.export import export_model

        return export_model(self, model, config, out_dir, formats)

    def qat(self, model, config, run_dir: Path, steps: int) -> dict[str, Any]:
        """Quantization-aware fine-tuning of a trained run (see :mod:`vision_core.quant.qat_job`)."""
        raise NotSupported(f"task {self.name!r} does not implement qat")

    def callbacks(self, config, run_dir: Path) -> list:
        """Extra Keras callbacks for training (after the trainer's own); default none."""
        return []
