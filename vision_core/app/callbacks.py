"""The trainer's Keras callbacks: NaN guard, EMA swap for validation, task evaluation, run log
(CSV + curves) and checkpoints (``last`` every epoch, ``best`` by the headline metric, and
the training state for ``--resume``). They share one :class:`RunState`.

Order matters and is set by :func:`vision_core.app.trainer.train`: the guard first (later
callbacks skip an epoch that diverged), the evaluator before the log and the checkpoints
(they read its metrics from the epoch's logs).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vision_core.app import runs
from vision_core.app.plots import plot_history
from vision_core.backend import keras, tf
from vision_core.storage.atomic import write_atomic
from vision_core.storage.training_state import save_training_state
from vision_core.storage.weights import save_npz, weights_by_path

if TYPE_CHECKING:
    from vision_core.app.config import Config
    from vision_core.app.task import Task


@dataclasses.dataclass
class RunState:
    """What the callbacks share and a checkpoint keeps: completed epochs, best metric, history."""

    epoch: int = 0
    best: float | None = None
    best_epoch: int | None = None
    best_loss: float | None = None  # the best epoch's val_loss, which breaks ties of the headline metric
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    diverged: str | None = None


def ema_pairs(model: keras.Model) -> list[tuple[keras.Variable, keras.Variable]]:
    """``[(model variable, its EMA)]`` of a model whose optimizer keeps an EMA (else empty)."""
    optimizer = model.optimizer
    if not getattr(optimizer, "use_ema", False) or not getattr(optimizer, "_model_variables_moving_average", None):
        return []
    return list(zip(optimizer._trainable_variables, optimizer._model_variables_moving_average))


@contextlib.contextmanager
def ema_weights(model: keras.Model) -> Iterator[keras.Model]:
    """Within the block the model holds its EMA weights (no-op without EMA); raw weights after."""
    pairs = ema_pairs(model)
    raw = [variable.numpy() for variable, _ in pairs]
    for variable, average in pairs:
        variable.assign(average.numpy())
    try:
        yield model
    finally:
        for (variable, _), value in zip(pairs, raw):
            variable.assign(value)


def evaluation_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """Weights by path as evaluation and export see them: the EMA of trainable weights if kept."""
    values = weights_by_path(model)
    for variable, average in ema_pairs(model):
        values[variable.path] = average.numpy()
    return values


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or infinite, naming epoch and step."""

    def __init__(self, state: RunState) -> None:
        super().__init__()
        self.state = state
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = float(np.asarray((logs or {}).get("loss", 0.0)))
        if not math.isfinite(loss):
            self.state.diverged = f"loss became {loss} at epoch {self.epoch + 1}, step {batch + 1}"
            self.model.stop_training = True


class EMAValidation(keras.callbacks.Callback):
    """Keras validation (``val_*`` metrics) runs on the EMA weights."""

    def __init__(self) -> None:
        super().__init__()
        self._swap: contextlib.AbstractContextManager[keras.Model] | None = None

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._swap = ema_weights(self.model)
        self._swap.__enter__()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self._swap.__exit__(None, None, None)
        self._swap = None


class TaskEvaluation(keras.callbacks.Callback):
    """Every ``interval`` epochs (and the last), adds ``val_<key>`` of ``task.evaluate`` to the logs.

    ``scored`` keeps each evaluated epoch's full metrics by 1-based epoch, so the trainer's
    final report reuses the best epoch's instead of scoring the same weights again.
    """

    def __init__(self, task: Task, config: Config, state: RunState, interval: int, epochs: int) -> None:
        super().__init__()
        self.task, self.config, self.state = task, config, state
        self.interval, self.epochs = interval, epochs
        self.scored: dict[int, dict[str, Any]] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        due = self.interval > 0 and ((epoch + 1) % self.interval == 0 or epoch + 1 == self.epochs)
        if self.state.diverged or not due:
            return
        with ema_weights(self.model):
            metrics = self.task.evaluate(self.model, self.config)
        self.scored[epoch + 1] = metrics
        logs.update({f"val_{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))})


class RunLog(keras.callbacks.Callback):
    """Appends each epoch (logs + learning rate) to the history; rewrites ``results.csv`` and ``results.png``."""

    def __init__(
        self, run_dir: Path, state: RunState, schedule: keras.optimizers.schedules.LearningRateSchedule
    ) -> None:
        super().__init__()
        self.run_dir, self.state, self.schedule = run_dir, state, schedule

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.state.diverged:
            return
        step = max(int(self.model.optimizer.iterations.numpy()) - 1, 0)
        row = {"epoch": epoch + 1, "lr": float(keras.ops.convert_to_numpy(self.schedule(step)))}
        row.update({k: float(np.asarray(v)) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        self.state.history.append(row)
        write_results_csv(self.state.history, self.run_dir / runs.RESULTS_CSV)
        plot_history(self.state.history, self.run_dir / runs.RESULTS_PNG)


class TensorBoardScalars(keras.callbacks.Callback):
    """Each epoch's history row as TensorBoard scalars (tag = column, step = epoch).

    Keras's own TensorBoard callback needs the ``tensorboard`` package, which TensorFlow 2.21 no
    longer pulls in; this writes the same event files with ``tf.summary.write`` and the scalars
    plugin's metadata, so TensorBoard (installed anywhere) shows them.
    """

    def __init__(self, log_dir: Path, state: RunState) -> None:
        super().__init__()
        self.log_dir, self.state = log_dir, state
        self.writer: tf.summary.SummaryWriter | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.state.diverged:
            return
        self.writer = self.writer or tf.summary.create_file_writer(str(self.log_dir))
        metadata = tf.compat.v1.SummaryMetadata(
            plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
        ).SerializeToString()
        row = self.state.history[-1]
        with self.writer.as_default():
            for key, value in row.items():
                if key != "epoch":
                    tf.summary.write(key, tf.constant(value, tf.float32), step=row["epoch"], metadata=metadata)
        self.writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.writer is not None:
            self.writer.close()


def write_results_csv(history: list[dict[str, float]], path: Path) -> Path:
    """One row per epoch; columns are every key seen, in order of first appearance (blank if absent)."""
    columns = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(history)
    return write_atomic(path, buffer.getvalue().encode())


class Checkpointer(keras.callbacks.Callback):
    """Each epoch: ``last`` weights, ``best`` by ``monitor`` and the training state, all atomic.

    A tie of ``monitor`` (a ROC AUC of 1.0 reached early) goes to the epoch of lower ``val_loss``.
    The state file is written last, so it never claims an epoch whose weights are missing.
    """

    def __init__(self, run_dir: Path, state: RunState, monitor: str, mode: str) -> None:
        super().__init__()
        self.run_dir, self.state, self.monitor, self.mode = run_dir, state, monitor, mode

    def _improved(self, value: float, loss: float | None) -> bool:
        if self.state.best is None:
            return True
        if value != self.state.best:
            return value > self.state.best if self.mode == "max" else value < self.state.best
        return loss is not None and (self.state.best_loss is None or loss < self.state.best_loss)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.state.diverged:
            return
        weights = evaluation_weights(self.model)
        save_npz(weights, runs.weights_path(self.run_dir, "last"))
        value, loss = (logs or {}).get(self.monitor), (logs or {}).get("val_loss")
        loss = float(loss) if loss is not None and math.isfinite(float(loss)) else None
        if value is not None and math.isfinite(float(value)) and self._improved(float(value), loss):
            self.state.best, self.state.best_epoch, self.state.best_loss = float(value), epoch + 1, loss
            save_npz(weights, runs.weights_path(self.run_dir, "best"))
        self.state.epoch = epoch + 1
        save_training_state(self.run_dir / runs.STATE, self.model, dataclasses.asdict(self.state))
