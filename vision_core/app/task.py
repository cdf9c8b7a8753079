"""The Task: the small surface a task app (detect, segment, classify, superres, lanes) supplies.

The shared CLI (:mod:`vision_core.app.cli`), trainer (:mod:`vision_core.app.trainer`) and
shipping (:mod:`vision_core.app.ship`) drive every app only through this class, so ``train``,
``eval``, ``predict``, ``qat``, ``export``, ``bench`` and ``data`` mean the same thing
everywhere. An app subclasses :class:`Task`, sets the class attributes and implements the
four abstract methods; the other methods have working defaults or raise :class:`NotSupported`.

Config: ``presets`` maps preset names to instances of the app's config dataclass (the
first is the default). The dataclass has a ``train`` field holding a
:class:`vision_core.app.config.TrainConfig` and a ``qat`` field holding a
:class:`vision_core.app.config.QATConfig`; its other fields (model, data, ...) are the
app's own, declared with :func:`vision_core.app.config.setting` so ``--help`` explains them.

How to add an app (``apps/<task>/``):

1. ``config.py``: the config dataclass (model and data sections, ``train``, ``qat``) and
   ``PRESETS``.
2. ``models/``: builders ``build_x(**fields) -> keras.Model`` taking JSON-friendly keyword
   arguments, so the QAT child rebuilds the model in the tf_keras flavour.
3. The data readers (``vision_core/data/<task>/``) with a ``check`` that names every bad file.
4. The evaluator (``vision_core/<task>/``), one function for every form: it takes a Keras
   model or an exported file (``.tflite``, ``.onnx``) through a runner.
5. ``task.py``: a :class:`Task` subclass with ``build_model``, ``datasets``,
   ``compile_args``, ``evaluate``, ``backbone`` (which registered backbone the model holds, for
   pretrained weights, freezing and the backbone's learning rate) and the shipping hooks
   ``model_info`` and ``qat_builder`` (plus ``qat_loss``, ``inference``, ``predict`` when the
   defaults do not fit);
   ``__main__.py``: ``raise SystemExit(main(MyTask()))``.

Everything else (train with resume and transfer learning, eval, QAT, every export form, the
every-form table, bench, run folders, the CLI) is the framework's.
"""

from __future__ import annotations

import abc
import argparse
import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeAlias

import numpy as np

from vision_core.app.config import Config
from vision_core.app.ship import FORMS
from vision_core.backend import keras, tf
from vision_core.errors import NotSupported

if TYPE_CHECKING:
    from tflite.metadata import ModelInfo

ModelOrFile: TypeAlias = keras.Model | str | os.PathLike  # what the evaluator scores: Keras, or an exported file


class BackboneSpec(NamedTuple):
    """The registered backbone inside a task's model (:meth:`Task.backbone`): ``build_backbone(name,
    input_shape, **options)`` builds its features model, whose variable paths and shapes the task's
    model shares."""

    name: str
    input_shape: tuple[int, int, int]
    options: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class AppCommand:
    """A command an app adds to the shared CLI beside ``train``, ``eval``, ... (:meth:`Task.commands`).

    ``add_arguments(parser)`` adds its own options; the config options follow. A command ``on_run`` (the
    default) also gets the options of every command on a trained run (``--run``, ``--weights``,
    ``--model``), and ``run(args, run_dir, config, model)`` gets the parsed arguments, the run folder, its
    resolved config and the model (the Keras model of ``--weights``, or the ``--model`` file's path). A
    command not on one run (``on_run=False``: the classify ``ensemble`` of several runs) is called
    ``run(task, args)``. ``run`` returns the JSON-friendly result the CLI prints and raises
    :class:`~vision_core.errors.AppError` for a user error.
    """

    help: str
    run: Callable[..., dict[str, Any]]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    on_run: bool = True


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
        export_formats: the forms ``export --format`` offers (:data:`vision_core.app.ship.FORMS`).
        tflite_options: keyword options of every TFLite conversion of the task
            (:func:`vision_core.export.tflite_export.export_tflite`; detection: custom ops allowed).
        int8_onnx_min_cosine: the lowest cosine between the int8 ONNX file's outputs and the int8
            TFLite file's on a calibration image that export accepts (None: no such check).
        float_onnx_outputs: the outputs the float ONNX file is held to Keras on within 1e-4 (None: all;
            detection: the sorted scores and the count, as NMS may order near-tied candidates otherwise).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    presets: ClassVar[Mapping[str, Config]]
    headline_metric: ClassVar[str]
    headline_mode: ClassVar[str] = "max"
    export_formats: ClassVar[tuple[str, ...]] = FORMS
    tflite_options: ClassVar[dict[str, Any]] = {}
    int8_onnx_min_cosine: ClassVar[float | None] = 0.999  # the QDQ graph follows the int8 TFLite (cos >= 0.9997)
    float_onnx_outputs: ClassVar[tuple[str, ...] | None] = None

    @abc.abstractmethod
    def build_model(self, config: Config) -> keras.Model:
        """The float Keras model (built inside the trainer's ``strategy.scope()``)."""

    @abc.abstractmethod
    def datasets(self, config: Config) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        """``(train, val)``: batched ``(inputs, targets)`` datasets of ``config.train.batch_size``.

        ``train`` is one epoch (finite, known cardinality, or set ``train.steps_per_epoch``).
        Shuffle with ``reshuffle_each_iteration`` and no explicit seed: the trainer seeds the
        global generator first, and on resume replays the shuffle order of the skipped epochs.
        """

    @abc.abstractmethod
    def compile_args(self, config: Config) -> dict[str, Any]:
        """Keyword arguments of ``model.compile`` except the optimizer: ``loss``, ``metrics``, ..."""

    @abc.abstractmethod
    def evaluate(self, model: ModelOrFile, config: Config) -> dict[str, Any]:
        """Score ``model`` on the val set: a Keras model, or the path of an exported form (``eval --model``).

        Returns the task's metrics, including :attr:`headline_metric`.
        """

    def backbone(self, config: Config) -> BackboneSpec | None:
        """The registered backbone :meth:`build_model`'s model is built on, or None (default) if it has none.

        Its variables in the model must be those of ``build_backbone(name, input_shape, **options)``
        (same paths, same shapes): a flat functional model built on the features model, or the
        backbone's own classifier, qualify. ``train.backbone_weights``, ``train.freeze_backbone`` and
        ``train.backbone_lr_ratio`` act on them (:mod:`vision_core.app.transfer`); with no backbone they
        are an error.
        """
        return None

    def validate(self, config: Config) -> None:
        """Check what the settings point at before ``train`` makes a run folder; raise
        :class:`~vision_core.errors.AppError` naming the problem (a missing file, an unreadable split).

        Default: nothing (types and section bounds are checked when the config is resolved). It should
        build nothing heavy; what it loads may be cached for :meth:`datasets`.
        """
        return None

    def plots(
        self, model: ModelOrFile, config: Config, metrics: dict[str, Any], out_dir: Path, suffix: str = ""
    ) -> dict[str, Path]:
        """Pictures of an evaluation written to ``out_dir``: ``{plot name: path}``; default none.

        ``metrics`` is :meth:`evaluate`'s dict for ``model`` (a Keras model, or an exported form's
        path). Each file is named ``<plot name><suffix>.png``: ``eval --model FILE`` passes
        ``_<FILE's name>`` so scoring several forms into one run folder keeps every picture.
        Called by ``eval`` and at the end of ``train`` (the best weights, into the run folder).
        """
        return {}

    def predict(self, model: ModelOrFile, sources: list[str], config: Config, out_dir: Path) -> dict[str, Any]:
        """Run ``model`` (Keras, or an exported file's path) on image/video files or folders; drawn outputs
        to ``out_dir``."""
        raise NotSupported(f"task {self.name!r} does not implement predict")

    def representative_data(self, config: Config, batches: int = 8) -> Iterable[np.ndarray]:
        """Float32 model-input batches for int8 calibration; default: the first val batches."""
        _, val = self.datasets(config)
        for inputs, _targets in val.take(batches):
            yield np.asarray(inputs, np.float32)

    def check_data(self, config: Config) -> dict[str, Any]:
        """Validate the datasets up front; default: count the batches and samples of train and val."""
        report = {}
        for split, dataset in zip(("train", "val"), self.datasets(config)):
            batches = samples = 0
            for inputs, _targets in dataset:
                batches += 1
                samples += int(tf.shape(tf.nest.flatten(inputs)[0])[0])
            report[split] = {"batches": batches, "samples": samples}
        return report

    # shipping (vision_core.app.ship) ---------------------------------------------------------------------------
    def model_info(self, config: Config, name: str) -> ModelInfo:
        """The :class:`tflite.metadata.ModelInfo` every TFLite export of the task carries (labels, normalisation)."""
        raise NotSupported(f"task {self.name!r} does not describe its exports (model_info)")

    def serving_preprocess(self, config: Config, info: ModelInfo) -> tuple[Callable, int | None]:
        """``(pixels -> model input, channels to decode)`` of the SavedModel's ``serving_bytes`` signature
        (:func:`vision_core.export.saved_model.export_saved_model`); default: the metadata's normalisation of
        images decoded to the model's own channels."""
        from vision_core.export.saved_model import Normalization

        return Normalization(info.mean, info.std), None

    def inference(self, config: Config) -> tuple[str, dict[str, Any]] | None:
        """``(module:function, options)`` turning the trained model into the shipped one, or None to ship it as is.

        The function takes ``(model, **options)`` in either Keras flavour (the QAT child calls it
        on the fake-quantized model); options are JSON-friendly.
        """
        return None

    def inference_model(self, model: keras.Model, config: Config) -> keras.Model:
        """The model every export form is made from: :meth:`inference` applied to ``model``."""
        from vision_core.quant.qat_job import imported

        function = self.inference(config)
        return model if function is None else imported(function[0])(model, **function[1])

    def serving_model(self, model: keras.Model, shipped: keras.Model, config: Config) -> keras.Model:
        """The model the SavedModel and ONNX exports are made from, given the trained ``model`` and the
        ``shipped`` one (:meth:`inference_model`); default ``shipped``. One whose input height and width
        are None serves any size."""
        return shipped

    def serving_postprocess(self, config: Config) -> Callable[[dict], dict] | None:
        """What the SavedModel's signatures (``serving_default``, ``serving_bytes``) serve beyond the shipped model's
        outputs: a function of its output dict ``{name: tensor}`` returning the served dict, built from TF ops and
        constants only (segmentation adds the arg-max ``class_map``); default None, the outputs as they are.
        The float ONNX file, converted from ``serving_default``, carries the same outputs."""
        return None

    def qat_builder(self, config: Config) -> tuple[str, dict[str, Any]]:
        """``(module:function, kwargs)`` building the float model, for the QAT child (tf_keras flavour)."""
        raise NotSupported(f"task {self.name!r} does not implement qat (no qat_builder)")

    def qat_loss(self, config: Config) -> tuple[str, dict[str, Any]]:
        """The fine-tune loss of ``qat.fine_tune_target: task``: a name of
        :data:`vision_core.quant.qat_job.LOSSES` or ``module:function``, and its options."""
        raise NotSupported(f"task {self.name!r} has no QAT loss of its own: use --fine-tune-target distillation")

    def qat_distillation_loss(self, config: Config) -> str:
        """The fine-tune loss of ``qat.fine_tune_target: distillation``, one of
        :data:`vision_core.quant.qat_job.DISTILLATION_LOSSES`; default: the softmax KL of a single-label
        classifier's logits (a multi-label sigmoid head distils per label: ``distillation_binary_kl_from_logits``)."""
        return "distillation_kl_from_logits"

    def qat_data(self, config: Config, count: int) -> dict[str, np.ndarray]:
        """``count`` fine-tune images ``train_x`` and their targets (``train_y``, or ``target.<output>`` for
        dict targets), in the order the fine-tune cycles through; default: the first training batches."""
        train, _ = self.datasets(config)
        images, targets = [], []
        for batch_images, batch_targets in train.unbatch().take(count):
            images.append(np.asarray(batch_images))
            targets.append(tf.nest.map_structure(np.asarray, batch_targets))
        if isinstance(targets[0], dict):
            return {
                "train_x": np.stack(images),
                **{f"target.{k}": np.stack([t[k] for t in targets]) for k in targets[0]},
            }
        return {"train_x": np.stack(images), "train_y": np.stack(targets)}

    def compare_forms(self, forms: Mapping[str, ModelOrFile], config: Config) -> list[dict[str, Any]]:
        """Score each form (a Keras model or an exported file) with :meth:`evaluate`; rows of its scalar
        metrics and their deltas to the first form (see :func:`vision_core.app.ship.compare_metrics`)."""
        from vision_core.app.ship import compare_metrics

        metrics = {name: self.evaluate(model, config) for name, model in forms.items()}
        return compare_metrics(metrics, next(iter(forms)))

    def export(
        self,
        model: keras.Model,
        config: Config,
        run_dir: Path,
        formats: list[str],
        saved_models: str | Path = "saved_models",
    ) -> dict[str, Path]:
        """Write the shipped forms of a run (:func:`vision_core.app.ship.export_run`)."""
        from vision_core.app.ship import export_run

        return export_run(self, model, config, run_dir, formats, saved_models)

    def qat(self, model: keras.Model, config: Config, run_dir: Path) -> dict[str, Any]:
        """Quantization-aware fine-tuning of a trained run (:func:`vision_core.app.ship.run_qat`)."""
        from vision_core.app.ship import run_qat

        return run_qat(self, model, config, run_dir)

    def commands(self) -> dict[str, AppCommand]:
        """The app's own CLI commands ``{name: AppCommand}`` beside the shared ones (classify: ``explain``);
        default none. A name of a shared command is an error."""
        return {}

    def callbacks(self, config: Config, run_dir: Path) -> list[keras.callbacks.Callback]:
        """Extra Keras callbacks for training (after the trainer's own); default none."""
        return []
