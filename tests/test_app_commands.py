"""An app's own commands (Task.commands) join the shared command line: listed, parsed, run, their errors exit 2."""

from __future__ import annotations

import json

import pytest
from toy_task import ToyTask

from vision_core.app.cli import build_parser, main
from vision_core.app.task import AppCommand
from vision_core.errors import AppError


def _add_arguments(parser):
    parser.add_argument("words", nargs="+")
    parser.add_argument("--shout", action="store_true")


def _echo(task, args):
    if args.words == ["fail"]:
        raise AppError("echo: nothing to say")
    text = " ".join(args.words)
    epochs = vars(args)["config:train.epochs"]
    return {"task": task.name, "text": text.upper() if args.shout else text, "epochs": epochs}


class EchoTask(ToyTask):
    def commands(self):
        return {"echo": AppCommand("repeat the words (a test command)", _add_arguments, _echo)}


def test_an_app_command_is_listed_and_runs_with_its_options_and_the_config_options(capsys):
    assert "echo     repeat the words" in build_parser(EchoTask()).description
    assert main(EchoTask(), ["echo", "a", "b", "--shout", "--epochs", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == {"task": "toy", "text": "A B", "epochs": 3}


def test_an_app_command_error_exits_2_with_its_message(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(EchoTask(), ["echo", "fail"])
    assert exit_info.value.code == 2 and "echo: error: echo: nothing to say" in capsys.readouterr().err


def test_an_app_command_may_not_take_a_shared_command_name():
    class Clash(ToyTask):
        def commands(self):
            return {"eval": AppCommand("another eval", _add_arguments, _echo)}

    with pytest.raises(ValueError, match=r"\['eval'\]"):
        build_parser(Clash())
