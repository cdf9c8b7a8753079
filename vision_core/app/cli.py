"""One command-line grammar for every task app: ``python -m apps.<task> COMMAND [options]``.

Commands (the same meaning in every app, as Ultralytics' modes)::

    train    train a model into runs/<task>/<name>/ (or --resume one)
    eval     score a run's weights with the task's evaluator
    predict  run a run's weights on images/videos, write drawn outputs
    qat      quantization-aware fine-tuning of a run (TF-MOT)
    export   write a run's shipped forms (SavedModel, TFLite float32/int8)
    bench    batch-1 latency of a run's model and exported files
    data     check the datasets of a config before a long run

An app adds commands of its own on a trained run through :meth:`Task.commands`
(:class:`vision_core.app.task.AppCommand`; classify: ``explain``).

Every command takes the config options, generated from the task's config dataclass:
``--preset`` < ``--config file.yaml`` < ``--set key=value`` (dotted keys) < direct flags
(``--epochs 3 --batch-size 8``). Commands on a trained run (``--run``) start from the run's
``config.yaml`` instead of a preset. User errors (bad key, missing file, unsupported
command) exit with status 2 and one message naming the problem, without a traceback.

An app's ``__main__.py``::

    from apps.detect.task import DetectTask
    from vision_core.app.cli import main

    raise SystemExit(main(DetectTask()))
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vision_core.app import runs, ship
from vision_core.app.config import Config, flag_names, leaves, parse_text, resolve, type_name
from vision_core.errors import AppError
from vision_core.logs import get_logger, log_to_console

if TYPE_CHECKING:
    from vision_core.app.task import ModelOrFile, Task

log = get_logger()
CONFIG_DEST = "config:"
COMMANDS = {
    "train": "train a model into a run folder (runs/<task>/<name>/), or continue one with --resume",
    "eval": "score a run's weights on the validation set with the task's evaluator (writes all metrics to "
    "<run>/eval.json, or eval_<file>.json for --model, and the task's plots beside it; prints the metrics "
    "without curves)",
    "predict": "run a run's weights on images, videos or folders and write drawn outputs",
    "qat": "quantization-aware fine-tuning (TF-MOT) of a trained run -> <run>/qat/qat_int8.tflite",
    "export": "write a run's shipped forms (TFLite float32/fp16/int8/int16x8 with metadata, SavedModel, ONNX) to "
    "<run>/exports/ and score every form with the task's evaluator",
    "bench": "batch-1 latency of a run's Keras model and exported .tflite files (writes <run>/bench.json)",
    "data": "check the datasets of a config (or of a run) before a long run",
}


def _metavar(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "{" + ",".join(map(str, typing.get_args(annotation))) + "}"
    if origin in (tuple, list):
        return "LIST"
    if origin is not None:
        return _metavar(next(a for a in typing.get_args(annotation) if a is not type(None)))
    return annotation.__name__.upper()


def _add_config_options(parser: argparse.ArgumentParser, task: Task) -> None:
    presets = list(task.presets)
    group = parser.add_argument_group("config", "precedence: --preset < --config YAML < --set < direct flags")
    group.add_argument(
        "--preset", choices=presets, default=None, help=f"named config (default: {presets[0]}; new runs only)"
    )
    group.add_argument(
        "--config", metavar="YAML", default=None, help="YAML file of overrides, nested like config.yaml (default: none)"
    )
    group.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="assignments",
        help="override one config key by its dotted name, e.g. train.epochs=3; repeatable (default: none)",
    )
    defaults = task.presets[presets[0]]
    names = flag_names(defaults)
    for leaf in leaves(defaults):
        text = f"{leaf.help or leaf.path} [{leaf.path}: {type_name(leaf.annotation)}] (default: {leaf.default!r})"
        options: dict[str, Any] = {"dest": CONFIG_DEST + leaf.path, "default": argparse.SUPPRESS, "help": text}
        if leaf.annotation is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = parse_text
            options["metavar"] = _metavar(leaf.annotation)
            if leaf.flag_alone is not dataclasses.MISSING:
                options.update(nargs="?", const=leaf.flag_alone)
        group.add_argument(f"--{names[leaf.path]}", **options)


def build_parser(task: Task) -> argparse.ArgumentParser:
    """The ``argparse`` parser of ``task``'s app: one sub-command per entry of :data:`COMMANDS`."""
    prog = f"python -m apps.{task.name}"
    own = task.commands()
    shadowed = sorted(set(own) & set(COMMANDS))
    if shadowed:
        raise ValueError(f"task {task.name!r}: its commands {shadowed} shadow shared commands")
    commands = {**COMMANDS, **{name: command.help for name, command in own.items()}}
    parser = argparse.ArgumentParser(
        prog=prog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(task.description + "\n\n" if task.description else "")
        + "commands:\n"
        + "\n".join(f"  {name:<8} {text}" for name, text in commands.items()),
        epilog=f"examples:\n  {prog} train --epochs 3 --batch-size 8 --name quick\n"
        f"  {prog} train --config exp.yaml --set train.learning_rate=0.01\n"
        f"  {prog} train --resume runs/{task.name}/quick\n"
        f"  {prog} eval --run runs/{task.name}/quick --weights best\n"
        f"  {prog} COMMAND --help   (every option of a command, with its default)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    default_project = f"runs/{task.name}"
    for name, text in commands.items():
        command = sub.add_parser(name, help=text, description=text)
        run = command.add_argument_group("run")
        if name == "train":
            run.add_argument(
                "--project", default=default_project, help=f"folder holding the runs (default: {default_project})"
            )
            run.add_argument(
                "--name", default=None, help="run name; if taken, name2, name3, ... are used (default: exp)"
            )
            run.add_argument(
                "--exist-ok",
                action="store_true",
                help="reuse an existing --name folder instead of incrementing (default: off)",
            )
            run.add_argument(
                "--resume",
                nargs="?",
                const=True,
                default=None,
                metavar="RUN",
                help="continue an interrupted run from its last completed epoch; without RUN, "
                "the newest resumable run of --project (default: off)",
            )
        elif name not in own or own[name].on_run:
            needed = " (required)" if name != "data" else " (default: none: the config options alone)"
            run.add_argument(
                "--run",
                required=name != "data",
                default=None,
                type=Path,
                help=f"run folder, e.g. runs/{task.name}/exp{needed}",
            )
            if name != "data":
                run.add_argument("--weights", default="best", help="best, last, or a .weights.npz path (default: best)")
            if name in ("eval", "predict") or name in own:
                run.add_argument(
                    "--model",
                    type=Path,
                    default=None,
                    help="an exported model (.keras, .tflite, .onnx) to use instead of --weights; "
                    "scored with the same evaluator (default: none)",
                )
        if name == "data":
            command.add_argument(
                "action",
                nargs="?",
                choices=["check"],
                default="check",
                help="check: validate every image and annotation, name each bad one (default)",
            )
        if name == "predict":
            command.add_argument("sources", nargs="+", help="image or video files or folders")
            command.add_argument("--out", type=Path, default=None, help="output folder (default: <run>/predict)")
        if name == "export":
            command.add_argument(
                "--format",
                nargs="+",
                default=["all"],
                choices=[*task.export_formats, *ship.GROUPS],
                help="forms to write: "
                + ", ".join(task.export_formats)
                + "; tflite = every TFLite form (int8 includes the QAT file after qat), "
                "all = every form (default: all)",
            )
            command.add_argument(
                "--saved-models",
                type=Path,
                default=Path("saved_models"),
                help="TF Serving root: the SavedModel goes to <root>/<task>_<run>/<version>/ and "
                "<root>/models.config is rewritten (default: saved_models)",
            )
            command.add_argument(
                "--score",
                action=argparse.BooleanOptionalAction,
                default=True,
                help="score the float model and every written file with the task's evaluator "
                "into <run>/exports/forms.json (default: on)",
            )
        if name == "bench":
            command.add_argument("--runs", type=int, default=50, help="timed runs per model (default: 50)")
            command.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: 5)")
            command.add_argument(
                "--threads", type=int, nargs="+", default=[1], help="TFLite thread counts (default: 1)"
            )
        if name in own and own[name].add_arguments is not None:
            own[name].add_arguments(command)
        _add_config_options(command, task)
    return parser


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {k[len(CONFIG_DEST) :]: v for k, v in vars(args).items() if k.startswith(CONFIG_DEST)}


def resolve_config(task: Task, args: argparse.Namespace, run_dir: Path | None = None) -> Config:
    """The config of a command: preset (or ``run_dir/config.yaml``) < ``--config`` < ``--set`` < flags."""
    if run_dir is None:
        return resolve(task.presets, args.preset, args.config, args.assignments, _flags(args))
    if args.preset:
        raise AppError(
            f"--preset {args.preset}: a run's config comes from {run_dir / runs.CONFIG}; "
            "use --config/--set/flags to change it"
        )
    return resolve({"run": runs.run_config(task, run_dir)}, "run", args.config, args.assignments, _flags(args))


def _train(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    from vision_core.app import transfer
    from vision_core.app.trainer import train

    if args.resume:
        run_dir = runs.latest_run(args.project) if args.resume is True else runs.existing_run(args.resume)
        config = resolve_config(task, args, run_dir)
    else:
        run_dir, config = None, resolve_config(task, args)
    task.validate(config)  # before a new run folder exists: a start that fails leaves nothing behind
    transfer.check_transfer(task, config)
    if run_dir is None:
        run_dir = runs.new_run_dir(args.project, runs.safe_name(args.name) if args.name else None, args.exist_ok)
    log.info("run folder: %s", run_dir)
    result = train(task, config, run_dir, resume=bool(args.resume))
    return {k: result[k] for k in ("run", "epochs", "best_epoch", "headline_metric", "headline", "plots")}


def _trained(task: Task, args: argparse.Namespace) -> tuple[Path, Config, ModelOrFile]:
    run_dir = runs.existing_run(args.run)
    config = resolve_config(task, args, run_dir)
    if getattr(args, "model", None) is not None:
        if not args.model.exists():
            raise AppError(f"{args.model}: model file not found")
        return run_dir, config, args.model
    return run_dir, config, runs.load_model(task, config, runs.resolve_weights(run_dir, args.weights))


def _eval(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    from vision_core.storage.atomic import write_atomic

    run_dir, config, model = _trained(task, args)
    source = str(args.model) if args.model is not None else str(runs.resolve_weights(run_dir, args.weights))
    result = {"model" if args.model is not None else "weights": source, "metrics": task.evaluate(model, config)}
    path = run_dir / ("eval.json" if args.model is None else f"eval_{args.model.name}.json")
    write_atomic(path, json.dumps(result, indent=2, default=float).encode())
    plots = task.plots(model, config, result["metrics"], run_dir, "" if args.model is None else f"_{args.model.name}")
    return {
        **result,
        "metrics": _without_sequences(result["metrics"]),
        "written": str(path),
        "plots": {name: str(plot) for name, plot in plots.items()},
    }


def _without_sequences(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` without its lists (curves such as detection's PR curves) and without the dicts that held
    nothing else: what ``eval`` prints."""
    kept = {
        key: _without_sequences(value) if isinstance(value, dict) else value
        for key, value in metrics.items()
        if not isinstance(value, (list, tuple))
    }
    return {key: value for key, value in kept.items() if value != {} or metrics[key] == {}}


def _predict(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    run_dir, config, model = _trained(task, args)
    return task.predict(model, args.sources, config, args.out or run_dir / "predict")


def _qat(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    run_dir, config, model = _trained(task, args)
    return task.qat(model, config, run_dir)


def _export(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    run_dir, config, model = _trained(task, args)
    written = task.export(model, config, run_dir, args.format, args.saved_models)
    result: dict[str, Any] = {"files": {form: str(path) for form, path in written.items()}}
    if args.score:
        path = run_dir / "exports" / "forms.json"
        result["forms"] = ship.score_forms(task, model, config, ship.scored_files(written), path)
        result["scores"] = str(path)
    return result


def _bench(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    from vision_core.app.bench import bench_run
    from vision_core.storage.atomic import write_atomic

    run_dir, config, model = _trained(task, args)
    result = bench_run(task, model, config, run_dir, runs=args.runs, warmup=args.warmup, threads=tuple(args.threads))
    write_atomic(run_dir / "bench.json", json.dumps(result, indent=2).encode())
    return result


def _data(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    config = resolve_config(task, args, runs.existing_run(args.run) if args.run else None)
    return task.check_data(config)


def _app_command(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    command = task.commands()[args.command]
    if not command.on_run:
        return command.run(task, args)
    run_dir, config, model = _trained(task, args)
    return command.run(args, run_dir, config, model)


HANDLERS: dict[str, Callable[[Task, argparse.Namespace], dict[str, Any]]] = {
    "train": _train,
    "eval": _eval,
    "predict": _predict,
    "qat": _qat,
    "export": _export,
    "bench": _bench,
    "data": _data,
}


def main(task: Task, argv: list[str] | None = None) -> int:
    """Run one command of ``task``'s app; prints its result as JSON on stdout, returns the exit status.

    ``data`` returns 1 when the task's report lists ``problems``; user errors exit 2 with a message.
    """
    parser = build_parser(task)
    args = parser.parse_args(argv)
    log_to_console()
    try:
        result = HANDLERS[args.command](task, args) if args.command in HANDLERS else _app_command(task, args)
    except AppError as error:
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")
    print(json.dumps(result, indent=2, default=str))
    return 1 if args.command == "data" and result.get("problems") else 0
