"""An app's own commands (``Task.commands``) join the shared CLI, on the toy task (``tests/toy_task.py``)."""

from __future__ import annotations

import json

import pytest
from toy_task import ToyTask

from vision_core.app import runs
from vision_core.app.cli import build_parser, main
from vision_core.app.task import AppCommand
from vision_core.errors import AppError


class CountingTask(ToyTask):
    """The toy task with a ``count`` command that reports what the CLI handed it."""

    def commands(self):
        def add_arguments(parser):
            parser.add_argument("--times", type=int, default=1, help="how often (default: 1)")

        def run(args, run_dir, config, model):
            if args.times < 0:
                raise AppError(f"--times {args.times}: must be 0 or more")
            return {"times": args.times, "run": str(run_dir), "width": config.width, "model": str(model)}

        return {"count": AppCommand("count things of a run", run, add_arguments)}


class ShadowingTask(ToyTask):
    def commands(self):
        return {"eval": AppCommand("another eval", lambda args, run_dir, config, model: {})}


@pytest.fixture()
def run_dir(tmp_path):
    run = runs.new_run_dir(tmp_path, "exp")
    (run / runs.CONFIG).write_text("width: 6\n")
    (tmp_path / "model.tflite").write_bytes(b"")
    return run


def test_an_app_command_gets_the_run_its_config_the_model_and_its_own_options(run_dir, capsys):
    model = run_dir.parent / "model.tflite"
    assert main(CountingTask(), ["count", "--run", str(run_dir), "--model", str(model), "--times", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == {"times": 3, "run": str(run_dir), "width": 6, "model": str(model)}


def test_an_app_command_is_listed_and_takes_the_config_options_and_its_user_errors_exit_2(run_dir, capsys):
    parser = build_parser(CountingTask())
    assert "count    count things of a run" in parser.description
    args = parser.parse_args(["count", "--run", str(run_dir), "--width", "8", "--weights", "last"])
    assert (args.times, args.weights, args.model) == (1, "last", None)
    model = str(run_dir.parent / "model.tflite")
    with pytest.raises(SystemExit) as exit_info:
        main(CountingTask(), ["count", "--run", str(run_dir), "--model", model, "--times", "-1"])
    assert exit_info.value.code == 2
    assert "count: error: --times -1: must be 0 or more" in capsys.readouterr().err


def test_an_app_command_may_not_shadow_a_shared_one():
    with pytest.raises(ValueError, match=r"\['eval'\] shadow shared commands"):
        build_parser(ShadowingTask())


def _echo_arguments(parser):
    parser.add_argument("words", nargs="+")
    parser.add_argument("--shout", action="store_true")


def _echo(task, args):
    if args.words == ["fail"]:
        raise AppError("echo: nothing to say")
    text = " ".join(args.words)
    return {
        "task": task.name,
        "text": text.upper() if args.shout else text,
        "epochs": vars(args)["config:train.epochs"],
    }


class EchoTask(ToyTask):
    """A command not on one run (as classify's ``ensemble``): no --run, called with the task and arguments."""

    def commands(self):
        return {"echo": AppCommand("repeat the words (a test command)", _echo, _echo_arguments, on_run=False)}


def test_a_command_not_on_a_run_gets_the_task_and_its_arguments_and_no_run_options(capsys):
    parser = build_parser(EchoTask())
    assert "echo     repeat the words" in parser.description
    assert not hasattr(parser.parse_args(["echo", "a"]), "run")
    assert main(EchoTask(), ["echo", "a", "b", "--shout", "--epochs", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == {"task": "toy", "text": "A B", "epochs": 3}
    with pytest.raises(SystemExit) as exit_info:
        main(EchoTask(), ["echo", "fail"])
    assert exit_info.value.code == 2 and "echo: error: echo: nothing to say" in capsys.readouterr().err
