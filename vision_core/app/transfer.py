"""Transfer learning in the trainer: a pretrained backbone, frozen for some epochs, at its own learning rate.

A task names the registered backbone its model is built on (:meth:`Task.backbone`: name, input
shape, build options). The backbone's variables in the task's model are those of
``build_backbone(name, shape, **options)`` — the features model, no head — matched by variable
path (the layer names), so a detector built on the features model and a classifier built with
the backbone's head hold the same ones (:func:`backbone_variables` checks it).

Three ``train`` settings act on them:

* ``backbone_weights``: ``imagenet`` (keras.applications' file, read from the keras cache and
  downloaded by keras on first use, :mod:`vision_core.backbones.pretrained`), ``imagenet_if_available``
  (the same, but a file that can be neither found nor downloaded, or a backbone without ImageNet
  weights, means training from scratch with a warning: the presets' default, so an offline
  machine still trains), a keras.applications ``.h5`` path, a suite ``.weights.npz`` (another
  run's weights: only its backbone variables are read, a classifier's head is ignored), or a
  PyTorch checkpoint: timm's ``.safetensors`` or an official release's ``.pth`` (also ``.pt``,
  ``.bin``), read without torch and without running code from the file
  (:mod:`vision_core.storage.torch_files`) and mapped onto our variable paths
  (:mod:`vision_core.backbones.torch_layouts`). Every backbone variable must be found with its
  shape, else nothing is loaded and the error names them. The input normalisation the weights of
  keras.applications and PyTorch sources expect is folded into the backbone's stem
  (:mod:`vision_core.backbones.input_norm`): our models keep taking ``x / 127.5 - 1``.
* ``freeze_backbone``: :class:`FreezeBackbone` makes the backbone's layers non-trainable (batch
  norms then run in inference mode) for the first epochs and rebuilds the train function when
  that changes; the optimizer is built over every variable first, so it keeps its state.
* ``backbone_lr_ratio``: the optimizer scales the backbone's updates
  (:class:`vision_core.app.schedules.BackboneLearningRate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vision_core.app.config import IMAGENET, IMAGENET_IF_AVAILABLE
from vision_core.app.task import BackboneSpec
from vision_core.backbones import build_backbone
from vision_core.backbones.input_norm import InputNorm, fold_input_norm, source_input_norm
from vision_core.backbones.pretrained import (
    IMAGENET_BACKBONES,
    ImagenetUnavailable,
    keras_applications_weights,
    keras_layout_problem,
)
from vision_core.backbones.torch_layouts import convert, source_options_note
from vision_core.backend import keras
from vision_core.errors import AppError
from vision_core.logs import get_logger
from vision_core.storage.torch_files import read_checkpoint
from vision_core.storage.weights import load_npz, variables_by_path

if TYPE_CHECKING:
    from vision_core.app.config import Config, TrainConfig
    from vision_core.app.task import Task

log = get_logger()
SHOWN = 20  # variables named in an error
TORCH_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")  # PyTorch checkpoints (timm, official releases)


def uses_backbone(settings: TrainConfig) -> bool:
    """Whether any transfer-learning setting of ``train`` is on (then the task must name its backbone)."""
    return bool(settings.backbone_weights) or settings.freeze_backbone != 0 or settings.backbone_lr_ratio != 1.0


def task_backbone(task: Task, config: Config) -> BackboneSpec:
    """The task's :class:`BackboneSpec`; :class:`AppError` when the task has none."""
    spec = task.backbone(config)
    if spec is None:
        raise AppError(
            f"task {task.name!r} has no backbone: train.backbone_weights, train.freeze_backbone and "
            "train.backbone_lr_ratio need one"
        )
    return BackboneSpec(*spec)


def check_transfer(task: Task, config: Config) -> None:
    """What can be checked before a run folder is made: the task has a backbone, an explicit ``imagenet`` fits
    it, a weights path exists. Builds nothing."""
    settings = config.train
    if not uses_backbone(settings):
        return
    spec = task_backbone(task, config)
    source = settings.backbone_weights
    if source == IMAGENET:
        problem = keras_layout_problem(spec.name, spec.options)
        if problem:
            raise AppError(f"--backbone-weights imagenet: {problem}; ImageNet weights exist for {IMAGENET_BACKBONES}")
    elif source and source != IMAGENET_IF_AVAILABLE and not Path(source).is_file():
        raise AppError(f"--backbone-weights {source}: file not found (or give imagenet)")


def backbone_variables(model: keras.Model, spec: BackboneSpec) -> dict[str, Any]:
    """``{path: variable}`` of ``model``'s backbone: every variable of ``build_backbone(*spec)``, found in
    ``model`` by path with the same shape (:class:`AppError` naming the ones that are not)."""
    reference = build_backbone(spec.name, spec.input_shape, **spec.options)
    shapes = {path: tuple(v.shape) for path, v in variables_by_path(reference).items()}
    targets = variables_by_path(model)
    missing = [p for p in shapes if p not in targets]
    mismatched = [
        f"{p} {tuple(targets[p].shape)} vs {shapes[p]}"
        for p in shapes
        if p in targets and tuple(targets[p].shape) != shapes[p]
    ]
    if missing or mismatched:
        raise AppError(
            f"model {model.name!r} does not hold backbone {spec.name} as the task says: "
            + _problems(missing, mismatched, len(shapes), "model")
        )
    return {p: targets[p] for p in shapes}


def _problems(missing: list[str], mismatched: list[str], total: int, where: str) -> str:
    parts = []
    if missing:
        parts.append(
            f"{len(missing)} of {total} backbone variables missing in the {where} ({', '.join(missing[:SHOWN])})"
        )
    if mismatched:
        parts.append(f"{len(mismatched)} with another shape (model vs {where}: {'; '.join(mismatched[:SHOWN])})")
    return "; ".join(parts)


def read_backbone_weights(source: str, spec: BackboneSpec, download: bool = True) -> tuple[Path, dict[str, np.ndarray]]:
    """``(file, {path: array})`` of ``source`` for the backbone ``spec`` (see the module docstring), with the
    source's input normalisation folded into the stem (:mod:`vision_core.backbones.input_norm`, logged).

    Raises :class:`ImagenetUnavailable` when keras.applications' file can be neither found nor
    downloaded, :class:`AppError` for a backbone without keras.applications' layout or an unknown file.
    """
    path, weights, norm = _read_source(source, spec, download)
    if norm is None:  # a suite run's weights: our inputs already
        return path, weights
    weights, note = fold_input_norm(spec.name, weights, norm, int(spec.input_shape[-1]))
    if note:
        log.info("%s: %s", path, note)
    else:
        log.info("%s: the source takes inputs as ours do (%s): no input normalisation folded", path, norm.name)
    return path, weights


def _read_source(
    source: str, spec: BackboneSpec, download: bool
) -> tuple[Path, dict[str, np.ndarray], InputNorm | None]:
    """``(file, {path: array}, the input normalisation the weights expect)`` of ``source`` (None: a suite
    ``.weights.npz``, which takes our inputs)."""
    imagenet = source in (IMAGENET, IMAGENET_IF_AVAILABLE)
    path = Path(source)
    if imagenet or path.suffix == ".h5":
        problem = keras_layout_problem(spec.name, spec.options)
        if problem:
            raise ImagenetUnavailable(f"{problem}; ImageNet weights exist for {IMAGENET_BACKBONES}")
        if not imagenet and not path.is_file():
            raise AppError(f"{path}: backbone weights not found")
        norm = source_input_norm(spec.name, "keras")
        options = {"alpha": float(spec.options.get("alpha", 1.0)), "rows": spec.input_shape[0], "download": download}
        if imagenet:
            return *keras_applications_weights(spec.name, IMAGENET, **options), norm
        try:
            return *keras_applications_weights(spec.name, path, **options), norm
        except ValueError:  # a legacy .h5 of the model with its head loads only into that model
            pass
        try:
            return *keras_applications_weights(spec.name, path, include_top=True, **options), norm
        except ValueError as error:
            raise AppError(f"{path}: not keras.applications' {spec.name} weights ({error})") from None
    if path.name.endswith(".npz"):
        if not path.is_file():
            raise AppError(f"{path}: backbone weights not found")
        return path, load_npz(path), None
    if path.suffix in TORCH_SUFFIXES:
        if not path.is_file():
            raise AppError(f"{path}: backbone weights not found")
        reference = build_backbone(spec.name, spec.input_shape, **spec.options)
        note = source_options_note(spec.name, spec.options)
        if note:
            log.warning("%s: %s", path, note)
        tensors = read_checkpoint(path)
        norm = source_input_norm(spec.name, "torch", path, tensors)
        weights = convert(spec.name, spec.options, list(variables_by_path(reference)), tensors, str(path))
        return path, weights, norm
    raise AppError(
        f"--backbone-weights {source}: expected imagenet, a keras.applications .h5, a .weights.npz or a PyTorch "
        f"checkpoint ({', '.join(TORCH_SUFFIXES)})"
    )


def assign_backbone(variables: dict[str, Any], weights: dict[str, np.ndarray], source: Path, spec: BackboneSpec) -> int:
    """Copy the backbone's ``variables`` from ``weights`` (extra entries, e.g. a head, are ignored); returns
    how many. Nothing is copied unless every one is there with its shape (:class:`AppError` naming them)."""
    missing = [p for p in variables if p not in weights]
    mismatched = [
        f"{p} {tuple(v.shape)} vs {tuple(np.shape(weights[p]))}"
        for p, v in variables.items()
        if p in weights and tuple(v.shape) != tuple(np.shape(weights[p]))
    ]
    if missing or mismatched:
        raise AppError(
            f"{source}: does not fit backbone {spec.name}: " + _problems(missing, mismatched, len(variables), "file")
        )
    for path, variable in variables.items():
        variable.assign(np.asarray(weights[path], dtype=variable.dtype))
    return len(variables)


def load_backbone_weights(
    variables: dict[str, Any], spec: BackboneSpec, source: str, download: bool = True
) -> tuple[Path, int] | None:
    """Load ``source`` into the backbone's ``variables``; returns ``(file, variables loaded)``, logged as
    ``loaded <file>: N of N backbone variables``. With ``imagenet_if_available``, ImageNet weights that
    cannot be had log a warning and return None (the backbone keeps its initialisation)."""
    try:
        path, weights = read_backbone_weights(source, spec, download)
    except ImagenetUnavailable as error:
        if source != IMAGENET_IF_AVAILABLE:
            raise AppError(f"--backbone-weights {source}: {error}") from None
        log.warning("no ImageNet weights: %s. Training the backbone from scratch (backbone_weights: %s)", error, source)
        return None
    count = assign_backbone(variables, weights, path, spec)
    log.info("loaded %s: %d of %d backbone variables (%s)", path, count, len(variables), spec.name)
    return path, count


def backbone_layers(model: keras.Model, variables: dict[str, Any]) -> list[keras.layers.Layer]:
    """The layers of ``model`` that own the backbone's ``variables`` (what :class:`FreezeBackbone` freezes);
    :class:`AppError` if one also owns variables outside the backbone."""
    ids = {id(v) for v in variables.values()}
    layers = []
    for layer in model.layers:
        inside = [id(w) in ids for w in layer.weights]
        if any(inside) and not all(inside):
            raise AppError(
                f"layer {layer.name!r} of {model.name!r} mixes backbone and other variables: cannot freeze it"
            )
        if any(inside):
            layers.append(layer)
    return layers


class FreezeBackbone(keras.callbacks.Callback):
    """The backbone's ``layers`` do not train during the first ``epochs`` epochs (-1: all): non-trainable,
    so their batch norms run in inference mode. Keras traces ``trainable`` into the train function, so a
    change rebuilds it; the optimizer, built over every variable, keeps its state."""

    def __init__(self, layers: list[keras.layers.Layer], epochs: int):
        super().__init__()
        self.layers, self.epochs, self.frozen = layers, epochs, False

    def frozen_at(self, epoch: int) -> bool:
        return self.epochs == -1 or epoch < self.epochs

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        frozen = self.frozen_at(epoch)
        if frozen == self.frozen:
            return
        for layer in self.layers:
            layer.trainable = not frozen
        self.frozen = frozen
        self.model.make_train_function(force=True)
        log.info("epoch %d: backbone %s", epoch + 1, "frozen" if frozen else "unfrozen")
