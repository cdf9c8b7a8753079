"""``python -m apps.classify ensemble RUN_A RUN_B [...] --combine mean|vote``: trained runs as one model in a new run.

The members must share their class names, input size, channels and head (a mismatch is an error naming the
runs). The new run folder (``--project``/``--name``, default ``runs/classify/ensemble``) holds::

    members/<i>_<run>.yaml      each member's config.yaml: its architecture (ensemble.members lists them)
    config.yaml                 the first member's config with the ensemble section (members, combine)
    weights/best.weights.npz    every member's weights (--weights), their paths prefixed member<i>_
    metrics.json, <plot>.png    the ensemble's score on the validation split, as train leaves them
    ensemble.json               the ensemble and each member scored by the same evaluator, side by side

so ``eval``, ``predict``, ``export`` and ``bench`` take it as any run: the model is
:func:`vision_core.classification.ensemble.ensemble_model` of the members (mean of their probabilities, or
majority vote with ties broken by the mean probability), one Keras model, one exported file. The dataset,
evaluation and calibration settings are the first member's (``--set``/flags change them). ``qat`` is not
offered for an ensemble (fine-tune the members; the ensemble ships post-training int8), nor ``int16x8`` for a
vote (TFLite has no 16x8 kernels for its comparisons).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vision_core.app import runs
from vision_core.app.task import AppCommand
from vision_core.errors import AppError
from vision_core.logs import get_logger
from vision_core.storage.atomic import copy_atomic, write_atomic

if TYPE_CHECKING:
    from apps.classify.config import ClassifyConfig
    from apps.classify.task import ClassifyTask

log = get_logger()
MEMBERS_DIR = "members"
SUMMARY = "ensemble.json"
SHARED = ("input_size", "channels", "head")  # model settings every member must share (besides the class names)


def member_config(task: ClassifyTask, path: str | Path) -> ClassifyConfig:
    """The config of one member from its ``config.yaml`` copy (over the app's first preset)."""
    from vision_core.app.config import apply_overrides, load_yaml

    return apply_overrides(task.presets[next(iter(task.presets))], load_yaml(path), str(path))


def build_ensemble(task: ClassifyTask, config: ClassifyConfig):
    """The float Keras ensemble of ``config.ensemble`` (members built from their config files, untrained)."""
    from apps.classify.models import build_classifier
    from vision_core.classification.ensemble import ensemble_model

    classes = len(task.class_names(config))
    members = []
    for path in config.ensemble.members:
        member = member_config(task, path)
        try:
            members.append(build_classifier(classes, **dataclasses.asdict(member.model)))
        except (KeyError, ValueError) as error:
            raise AppError(f"{path}: {error}") from None
    try:
        return ensemble_model(members, config.ensemble.combine, config.model.head == "sigmoid")
    except ValueError as error:
        raise AppError(f"ensemble of {', '.join(config.ensemble.members)}: {error}") from None


def vote_export_forms(formats: list[str]) -> list[str]:
    """The export forms of a vote ensemble: ``formats`` (groups expanded) without ``int16x8``, which TFLite cannot
    quantize (no 16x8 GREATER_EQUAL or SELECT_V2); asked for by name, it is an AppError."""
    from vision_core.app.ship import expand_forms

    if "int16x8" in formats:
        raise AppError(
            "int16x8 is not offered for a vote ensemble: TFLite has no 16x8 kernels for its vote "
            "(GREATER_EQUAL, SELECT_V2); export float32, float16 or int8, or use --combine mean"
        )
    return [form for form in expand_forms(formats) if form != "int16x8"]


def check_members(task: ClassifyTask, run_dirs: list[Path], configs: list[ClassifyConfig]) -> None:
    """AppError naming the runs unless every member shares the first's class names, input size, channels and
    head, and none is an ensemble itself."""
    if len(run_dirs) < 2:
        raise AppError(f"an ensemble needs at least two runs, got {len(run_dirs)}")
    first, reference = run_dirs[0], configs[0]
    names = task.class_names(reference)
    for run_dir, config in zip(run_dirs, configs):
        if config.ensemble.members:
            raise AppError(f"{run_dir} is an ensemble run: an ensemble combines trained runs")
        for setting in SHARED:
            mine, theirs = getattr(config.model, setting), getattr(reference.model, setting)
            if mine != theirs:
                raise AppError(
                    f"{first} and {run_dir} cannot be ensembled: model.{setting} {theirs!r} vs {mine!r} "
                    f"(members must share class names, {', '.join(SHARED)})"
                )
        if task.class_names(config) != names:
            raise AppError(
                f"{first} and {run_dir} cannot be ensembled: class names {list(names)} vs "
                f"{list(task.class_names(config))}"
            )


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("run")
    run.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="two or more trained run folders")
    run.add_argument("--weights", default="best", help="each member's weights: best or last (default: best)")
    run.add_argument("--project", default="runs/classify", help="folder holding the new run (default: runs/classify)")
    run.add_argument("--name", default="ensemble", help="run name; if taken, name2, ... (default: ensemble)")
    run.add_argument(
        "--exist-ok", action="store_true", help="reuse an existing --name folder instead of incrementing (default: off)"
    )
    run.add_argument(
        "--score",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score the ensemble and each member with the evaluator into metrics.json and ensemble.json (default: on)",
    )


def _with_members(config: ClassifyConfig, members: list[Path]) -> ClassifyConfig:
    return dataclasses.replace(config, ensemble=dataclasses.replace(config.ensemble, members=tuple(map(str, members))))


def make_ensemble(task: ClassifyTask, args: argparse.Namespace) -> dict[str, Any]:
    """The ``ensemble`` command: check the members and build the model before any folder is made, then write the
    new run folder and score it (module docstring)."""
    from vision_core.app.cli import resolve_config
    from vision_core.app.config import save_config
    from vision_core.classification.ensemble import member_weights
    from vision_core.storage.weights import assign_by_path, load_npz, save_npz

    run_dirs = [runs.existing_run(path) for path in args.runs]
    configs = [runs.run_config(task, run_dir) for run_dir in run_dirs]
    check_members(task, run_dirs, configs)
    weight_files = [runs.resolve_weights(run_dir, args.weights) for run_dir in run_dirs]
    base = resolve_config(task, args, run_dirs[0])
    model = task.build_model(_with_members(base, [run_dir / runs.CONFIG for run_dir in run_dirs]))
    weights: dict = {}
    for index, path in enumerate(weight_files):
        weights.update(member_weights(load_npz(path), index))
    try:
        assign_by_path(model, weights)
    except ValueError as error:
        raise AppError(f"the members' weights do not fit their configs: {error}") from None

    out = runs.new_run_dir(args.project, runs.safe_name(args.name), args.exist_ok)
    log.info("ensemble of %d runs (%s): %s", len(run_dirs), base.ensemble.combine, out)
    copies = [
        copy_atomic(run_dir / runs.CONFIG, out / MEMBERS_DIR / f"{index}_{run_dir.name}.yaml")
        for index, run_dir in enumerate(run_dirs)
    ]
    config = _with_members(base, copies)
    save_npz(weights, runs.weights_path(out, "best"))
    save_config(config, out / runs.CONFIG)
    result: dict[str, Any] = {"run": str(out), "combine": config.ensemble.combine, "members": list(map(str, run_dirs))}
    if not args.score:
        return result
    members = {str(r): runs.load_model(task, c, w) for r, c, w in zip(run_dirs, configs, weight_files)}
    files = [{"run": str(r), "weights": str(w), "config": str(c)} for r, w, c in zip(run_dirs, weight_files, copies)]
    return {**result, **score_ensemble(task, model, config, out, members, files)}


def score_ensemble(
    task: ClassifyTask, model, config: ClassifyConfig, out: Path, members: dict, files: list[dict]
) -> dict[str, Any]:
    """Score the ensemble ``model`` and its ``members`` (``{run: Keras model}``) with the same evaluator: the
    ensemble's ``metrics.json`` and plots, and ``ensemble.json`` with every row and the member ``files``."""
    from vision_core.app.config import to_dict
    from vision_core.app.ship import format_rows

    headline = task.headline_metric
    rows = task.compare_forms({"ensemble": model, **members}, config)
    metrics = task.evaluate(model, config)
    summary = {
        "run": str(out),
        "weights": "best",
        "headline_metric": headline,
        "headline": metrics.get(headline),
        "metrics": metrics,
        "config": to_dict(config),
    }
    write_atomic(out / runs.METRICS, json.dumps(summary, indent=2, default=float).encode())
    scores = {"combine": config.ensemble.combine, "members": files, "forms": rows}
    write_atomic(out / SUMMARY, json.dumps(scores, indent=2, default=float).encode())
    log.info("the ensemble and its members, same evaluator:\n%s", format_rows(rows))
    plots = task.plots(model, config, metrics, out)
    return {
        "headline_metric": headline,
        "scores": {row["form"]: row.get(headline) for row in rows},
        "written": str(out / SUMMARY),
        "plots": {name: str(path) for name, path in plots.items()},
    }


ENSEMBLE_COMMAND = AppCommand(
    "make one model of several trained runs (mean of their probabilities, or majority vote: --combine) in a new "
    "run folder that eval, predict, export (float and post-training int8; no qat) and bench take as any run",
    make_ensemble,
    _add_arguments,
    on_run=False,
)
