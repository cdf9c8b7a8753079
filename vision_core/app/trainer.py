"""Train a :class:`~vision_core.app.task.Task` with Keras ``fit`` into a run folder.

``train(task, config, run_dir, resume=False)`` does, in order: seed every generator from
``train.seed``; pick the tf.distribute strategy and dtype policy (:mod:`.distribute`); write
``config.yaml``; build the datasets, then the model and optimizer inside
``strategy.scope()``; on ``resume``, load ``weights/last.state.npz`` (weights, optimizer
state including the step that positions the learning-rate schedule, seed-generator
states, Python/NumPy RNG) and replay the skipped epochs' shuffle order, else start from
``train.init_weights`` and then the pretrained backbone of ``train.backbone_weights``
(:mod:`.transfer`, which also freezes the backbone for ``train.freeze_backbone`` epochs and
scales its learning rate); fit with the callbacks of :mod:`.callbacks`, TensorBoard and
Keras's progress bar; finally score the best weights with the task's evaluator into
``metrics.json`` and draw the task's plots of them. See :mod:`.runs` for the folder layout.

Epochs are fed as one stream, ``range(first, epochs).flat_map(lambda _: train_set)``, so
each epoch is exactly one fresh iterator of the task's training set (Keras's own
per-epoch iterator handling creates extra ones). Resume then replays the shuffle order by
creating (and dropping) one iterator per completed epoch, which advances the dataset's
reshuffle seed as the first run's epochs did: a resumed run ends with the same weights as
an uninterrupted one. With ``train.steps_per_epoch`` set, the stream is the training set
repeated and a resumed run sees a fresh data order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vision_core.app import runs, transfer
from vision_core.app.callbacks import (
    Checkpointer,
    EMAValidation,
    NaNGuard,
    RunLog,
    RunState,
    TaskEvaluation,
    TensorBoardScalars,
)
from vision_core.app.config import Config, save_config, to_dict
from vision_core.app.distribute import (
    is_chief,
    make_strategy,
    prebuild_for_multi_worker,
    set_dtype_policy,
    worker_index,
)
from vision_core.app.schedules import WarmupDecay, build_optimizer, build_schedule
from vision_core.backend import keras, tf
from vision_core.errors import AppError, TrainingDiverged
from vision_core.logs import get_logger
from vision_core.storage.atomic import write_atomic
from vision_core.storage.training_state import load_training_state
from vision_core.storage.weights import assign_by_path, load_npz, variables_by_path

if TYPE_CHECKING:
    from vision_core.app.task import Task

log = get_logger()


def epoch_stream(
    train_set: tf.data.Dataset, first_epoch: int, epochs: int, configured_steps: int | None
) -> tf.data.Dataset:
    """The batches of epochs ``first_epoch .. epochs - 1``: one iterator of ``train_set`` per epoch."""
    if configured_steps:
        return train_set.repeat()
    return tf.data.Dataset.range(first_epoch, epochs).flat_map(lambda _epoch: train_set)


def steps_per_epoch(dataset: tf.data.Dataset, configured: int | None) -> int:
    """``configured`` if set, else the dataset's cardinality (which must be finite and known)."""
    if configured:
        return configured
    count = int(dataset.cardinality())
    if count <= 0:
        raise AppError("the training set has no known finite length: set train.steps_per_epoch (--steps-per-epoch)")
    return count


def build_for_training(
    task: Task, config: Config, strategy: tf.distribute.Strategy, steps: int
) -> tuple[keras.Model, WarmupDecay, dict[str, Any]]:
    """Model and optimizer built in ``strategy.scope()``, compiled with the task's loss and metrics; also the
    backbone's variables by path when a transfer-learning setting needs them (else ``{}``)."""
    train = config.train
    schedule = build_schedule(train, steps)
    with strategy.scope():
        model = task.build_model(config)
        backbone = (
            transfer.backbone_variables(model, transfer.task_backbone(task, config))
            if transfer.uses_backbone(train)
            else {}
        )
        optimizer = build_optimizer(train, schedule, list(backbone.values()))
        model.compile(optimizer=optimizer, jit_compile=train.jit_compile, **task.compile_args(config))
        optimizer.build(model.trainable_variables)
    return model, schedule, backbone


def resume_state(run_dir: Path, model: keras.Model, train_set: tf.data.Dataset) -> RunState:
    """Load the run's training state into ``model`` and replay the completed epochs' shuffles."""
    path = run_dir / runs.STATE
    if not path.is_file():
        raise AppError(f"{path}: nothing to resume (no completed epoch was saved)")
    try:
        state = RunState(**load_training_state(path, model))
    except ValueError as error:
        raise AppError(str(error)) from None
    for _ in range(state.epoch):
        iter(train_set)
    log.info("resuming %s after epoch %d (best %s at epoch %s)", run_dir, state.epoch, state.best, state.best_epoch)
    return state


def initialise(model: keras.Model, weights_file: str | Path) -> None:
    """Copy the variables of ``weights_file`` into ``model`` by path (``train.init_weights``); log how many."""
    path = Path(weights_file)
    if not path.is_file():
        raise AppError(f"{path}: init weights not found")
    try:
        weights = load_npz(path)
        untouched = assign_by_path(model, weights, strict=False)
    except ValueError as error:
        raise AppError(f"{path}: {error}") from None
    total = len(variables_by_path(model))
    log.info("initialised %d of %d variables from %s", total - len(untouched), total, path)


def train(task: Task, config: Config, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train ``task`` with ``config`` into ``run_dir``; returns the final metrics (also ``metrics.json``).

    Raises :class:`TrainingDiverged` if the loss becomes NaN/inf (checkpoints keep the last good
    epoch) and :class:`AppError` for unusable settings.
    """
    run_dir = Path(run_dir)
    settings = config.train
    keras.utils.set_random_seed(settings.seed)
    try:
        strategy = make_strategy(settings.strategy)
        set_dtype_policy(settings.mixed_precision, strategy)
    except ValueError as error:
        raise AppError(str(error)) from None
    if not is_chief(strategy):
        run_dir = run_dir / f"worker{worker_index(strategy)}"
    log.info("strategy: %s, %d replicas", type(strategy).__name__, strategy.num_replicas_in_sync)
    save_config(config, run_dir / runs.CONFIG)

    train_set, val_set = task.datasets(config)
    steps = steps_per_epoch(train_set, settings.steps_per_epoch)
    model, schedule, backbone = build_for_training(task, config, strategy, steps)
    if resume:  # the checkpoint holds the backbone weights too
        state = resume_state(run_dir, model, train_set)
    else:
        state = RunState()
        if settings.init_weights:
            initialise(model, settings.init_weights)
        if settings.init_weights and settings.backbone_weights == transfer.IMAGENET_IF_AVAILABLE:
            log.info("init_weights given: the preset's ImageNet backbone (imagenet_if_available) is not loaded")
        elif settings.backbone_weights:
            transfer.load_backbone_weights(backbone, transfer.task_backbone(task, config), settings.backbone_weights)
    if state.epoch >= settings.epochs:
        raise AppError(
            f"{run_dir}: already trained {state.epoch} of {settings.epochs} epochs; raise --epochs to continue"
        )

    evaluation = TaskEvaluation(task, config, state, settings.eval_interval, settings.epochs)
    callbacks = [
        NaNGuard(state),
        *([EMAValidation()] if settings.ema else []),
        evaluation,
        RunLog(run_dir, state, schedule),
        Checkpointer(run_dir, state, f"val_{task.headline_metric}", task.headline_mode),
        TensorBoardScalars(run_dir / runs.TENSORBOARD, state),
        *(
            [transfer.FreezeBackbone(transfer.backbone_layers(model, backbone), settings.freeze_backbone)]
            if settings.freeze_backbone
            else []
        ),
        *task.callbacks(config, run_dir),
    ]
    prebuild_for_multi_worker(model, strategy, next(iter(val_set)))
    stream = epoch_stream(train_set, state.epoch, settings.epochs, settings.steps_per_epoch)
    model.fit(
        stream,
        validation_data=val_set,
        epochs=settings.epochs,
        initial_epoch=state.epoch,
        steps_per_epoch=steps,
        callbacks=callbacks,
        shuffle=False,
        verbose=1 if sys.stderr.isatty() else 2,
    )
    if state.diverged:
        kept = (
            f"last good checkpoint: {runs.weights_path(run_dir, 'last')} (epoch {state.epoch})"
            if state.epoch
            else "no checkpoint was saved"
        )
        raise TrainingDiverged(f"{run_dir}: {state.diverged}; training stopped, {kept}")
    return finish(task, config, model, run_dir, state, evaluation.scored)


def finish(
    task: Task, config: Config, model: keras.Model, run_dir: Path, state: RunState, scored: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """Score the best (else last) weights with the task's evaluator; write ``metrics.json``, then the
    task's plots of those weights (:meth:`Task.plots`) into the run folder.

    ``scored`` holds the evaluator's metrics by epoch from this process; when the best epoch is
    among them they are the best weights' score already (the checkpoint holds the weights the
    evaluator saw, EMA included) and are reused. A resumed run whose best epoch came before the
    restart scores the best weights again. Returns ``metrics.json``'s content plus ``plots``
    (``{name: path}``).
    """
    which = "best" if runs.weights_path(run_dir, "best").is_file() else "last"
    assign_by_path(model, load_npz(runs.weights_path(run_dir, which)))
    if which == "best" and state.best_epoch in scored:
        metrics = scored[state.best_epoch]
    else:
        metrics = task.evaluate(model, config)
    result = {
        "run": str(run_dir),
        "weights": which,
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        "headline_metric": task.headline_metric,
        "headline": metrics.get(task.headline_metric),
        "metrics": metrics,
        "config": to_dict(config),
    }
    write_atomic(run_dir / runs.METRICS, json.dumps(result, indent=2, default=float).encode())
    log.info(
        "%s: %s = %s (%s weights, epoch %s)", run_dir, task.headline_metric, result["headline"], which, state.best_epoch
    )
    plots = task.plots(model, config, metrics, run_dir)
    return {**result, "plots": {name: str(path) for name, path in plots.items()}}
