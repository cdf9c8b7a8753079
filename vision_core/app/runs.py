"""Run folders: ``runs/<task>/<name>/``, their layout, and loading a trained model back.

Layout (everything a run leaves behind, as Ultralytics does)::

    config.yaml                 the resolved config (load it with --config to repeat the run)
    weights/last.weights.npz    weights after the last completed epoch (EMA weights if train.ema)
    weights/best.weights.npz    weights of the best epoch by the task's headline val metric
    weights/last.state.npz      everything --resume needs: raw weights, optimizer state, RNG, history
    results.csv                 one row per epoch: loss, lr, validation and evaluator metrics
    results.png                 training curves (loss, lr, metrics vs epoch)
    metrics.json                final metrics of the best weights
    <plot>.png                  the task's plots of them (Task.plots; detection: pr_curve.png, gallery.png),
                                redrawn by eval; eval --model FILE writes <plot>_<FILE>.png
    tensorboard/                TensorBoard event files

Weights are stored by variable path (:mod:`vision_core.storage.weights`), written atomically.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from vision_core.errors import AppError

if TYPE_CHECKING:
    from vision_core.app.config import Config
    from vision_core.app.task import Task
    from vision_core.backend import keras

CONFIG = "config.yaml"
WEIGHTS = "weights"
STATE = "weights/last.state.npz"
RESULTS_CSV = "results.csv"
RESULTS_PNG = "results.png"
METRICS = "metrics.json"
TENSORBOARD = "tensorboard"


def weights_path(run_dir: str | Path, which: str = "best") -> Path:
    """``weights/<which>.weights.npz`` of a run (``which``: ``best`` or ``last``)."""
    return Path(run_dir) / WEIGHTS / f"{which}.weights.npz"


def new_run_dir(project: str | Path, name: str | None = None, exist_ok: bool = False) -> Path:
    """A fresh run folder ``project/name``, created; the name increments like Ultralytics.

    ``name`` defaults to ``exp``; if ``project/name`` exists (and not ``exist_ok``) the first free
    of ``name2``, ``name3``, ... is used.
    """
    project = Path(project)
    name = name or "exp"
    path = project / name
    if path.exists() and not exist_ok:
        index = 2
        while (project / f"{name}{index}").exists():
            index += 1
        path = project / f"{name}{index}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def latest_run(project: str | Path) -> Path:
    """The most recently written run of ``project`` that can be resumed (has a training state)."""
    runs = sorted(Path(project).glob(f"*/{STATE}"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise AppError(f"{project}: no run to resume (no */{STATE}); pass the run folder to --resume")
    return runs[-1].parents[1]


def existing_run(run_dir: str | Path) -> Path:
    """``run_dir`` if it is a run folder (has ``config.yaml``); :class:`AppError` otherwise."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise AppError(f"{run_dir}: not a run folder (no {CONFIG}); train first or pass --run")
    return run_dir


def resolve_weights(run_dir: Path, weights: str) -> Path:
    """``best``/``last`` of ``run_dir``, or a path to a ``.weights.npz`` file; must exist."""
    path = weights_path(run_dir, weights) if weights in ("best", "last") else Path(weights)
    if not path.is_file():
        raise AppError(f"{path}: weights not found")
    return path


def load_model(task: Task, config: Config, weights_file: str | Path) -> keras.Model:
    """``task.build_model(config)`` with the weights of ``weights_file`` assigned by variable path."""
    from vision_core.storage.weights import assign_by_path, load_npz

    model = task.build_model(config)
    try:
        assign_by_path(model, load_npz(weights_file))
    except ValueError as error:
        raise AppError(f"{weights_file}: does not fit the model of this config ({error})") from None
    return model


def run_config(task: Task, run_dir: str | Path) -> Config:
    """The config a run was trained with: its ``config.yaml`` over the task's first preset."""
    from vision_core.app.config import apply_overrides, load_yaml

    path = existing_run(run_dir) / CONFIG
    return apply_overrides(task.presets[next(iter(task.presets))], load_yaml(path), str(path))


def safe_name(name: str) -> str:
    """``name`` if it is a valid single folder name; :class:`AppError` otherwise."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise AppError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (one folder name)")
    return name
