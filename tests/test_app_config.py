"""Typed configs, presets and overrides; the CLI grammar's help, run folders and user errors."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from toy_task import ToyConfig, ToyTask

from vision_core.app import runs
from vision_core.app.cli import COMMANDS, build_parser, main, resolve_config
from vision_core.app.config import (
    ConfigError,
    QATConfig,
    TrainConfig,
    apply_overrides,
    flag_names,
    leaves,
    load_yaml,
    parse_text,
    resolve,
    save_config,
)
from vision_core.errors import AppError


def parsed(argv: list[str]):
    return build_parser(ToyTask()).parse_args(argv)


def test_leaves_are_dotted_paths_in_field_order():
    paths = [leaf.path for leaf in leaves(ToyConfig())]
    assert paths[:5] == ["width", "dropout", "data.train_samples", "data.val_samples", "data.data_seed"]
    train = [f"train.{f.name}" for f in dataclasses.fields(TrainConfig)]
    assert paths[5:] == train + [f"qat.{f.name}" for f in dataclasses.fields(QATConfig)]


@dataclasses.dataclass
class Part:
    size: int = 1


@dataclasses.dataclass
class Twin:
    model: Part = dataclasses.field(default_factory=Part)
    data: Part = dataclasses.field(default_factory=Part)
    epochs: int = 3


def test_direct_flags_use_the_last_key_part_unless_two_sections_share_it():
    assert flag_names(ToyConfig())["train.batch_size"] == "batch-size"
    assert flag_names(Twin()) == {"model.size": "model-size", "data.size": "data-size", "epochs": "epochs"}


def test_override_precedence_is_preset_then_yaml_then_set_then_flags(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("width: 6\ntrain:\n  epochs: 7\n  batch_size: 4\n  learning_rate: 0.2\n")
    args = parsed(
        [
            "train",
            "--preset",
            "wide",
            "--config",
            str(path),
            "--set",
            "train.epochs=9",
            "--set",
            "train.batch_size=5",
            "--batch-size",
            "8",
            "--ema",
            "--step-milestones",
            "[2, 4]",
        ]
    )
    config = resolve_config(ToyTask(), args)
    assert (config.width, config.dropout) == (6, 0.0)  # yaml over preset "wide" (8)
    assert (config.train.epochs, config.train.learning_rate) == (9, 0.2)  # --set over yaml; yaml over preset
    assert config.train.batch_size == 8  # flag over --set over yaml
    assert config.train.ema is True and config.train.step_milestones == (2, 4)
    assert config.train.optimizer == "adamw" and config.data.train_samples == 64  # untouched preset values
    assert ToyTask.presets["wide"].train.epochs == 3  # presets are never mutated


def test_ints_widen_to_floats_and_null_sets_an_optional():
    config = apply_overrides(
        ToyConfig(), {"train.learning_rate": 1, "train.clipnorm": 2.5, "train.steps_per_epoch": None}, "test"
    )
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)
    assert (config.train.clipnorm, config.train.steps_per_epoch) == (2.5, None)


def test_unknown_key_error_names_the_key_and_its_source():
    with pytest.raises(ConfigError, match=r"^--set: unknown config key 'train\.epoch'; known keys: width, "):
        resolve(ToyTask.presets, assignments=["train.epoch=3"])


def test_section_key_error_suggests_its_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'train' \(it is a section: set one of its keys"):
        apply_overrides(ToyConfig(), {"train": 3}, "x.yaml")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("train.epochs", "three", "--set: train.epochs='three' is not a valid int"),
        ("train.epochs", "2.5", "--set: train.epochs=2.5 is not a valid int"),
        ("train.optimizer", "lamb", "--set: train.optimizer='lamb' is not a valid 'sgd'|'adam'|'adamw'"),
        ("train.ema", "1", "--set: train.ema=1 is not a valid bool"),
        ("train.step_milestones", "[1, x]", "--set: train.step_milestones[1]='x' is not a valid int"),
        ("train.clipnorm", "big", "--set: train.clipnorm='big' is not a valid float | None"),
    ],
)
def test_bad_value_error_names_key_value_and_type(key, value, expected):
    with pytest.raises(ConfigError) as error:
        resolve(ToyTask.presets, assignments=[f"{key}={value}"])
    assert str(error.value) == expected


def test_bad_direct_flag_value_names_the_flag():
    with pytest.raises(ConfigError, match=r"^--epochs: train\.epochs='many' is not a valid int$"):
        resolve_config(ToyTask(), parsed(["train", "--epochs", "many"]))


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("train.epochs", "0", "train.epochs=0: must be at least 1"),
        ("train.epochs", "-1", "train.epochs=-1: must be at least 1"),
        ("train.batch_size", "0", "train.batch_size=0: must be at least 1"),
        ("train.learning_rate", "0", "train.learning_rate=0.0: must be greater than 0"),
        ("train.learning_rate", "-1e-3", "train.learning_rate=-0.001: must be greater than 0"),
        ("train.warmup_epochs", "-0.5", "train.warmup_epochs=-0.5: must be 0 or more"),
        ("train.eval_interval", "-1", "train.eval_interval=-1: must be 0 (Keras validation only) or more"),
        (
            "train.steps_per_epoch",
            "0",
            "train.steps_per_epoch=0: must be null (one pass over the training set) or at least 1",
        ),
    ],
)
def test_train_values_out_of_bounds_name_key_value_and_bound(key, value, expected):
    with pytest.raises(ConfigError) as error:
        resolve(ToyTask.presets, assignments=[f"{key}={value}"])
    assert str(error.value) == expected


def test_train_values_on_their_bounds_are_accepted():
    config = resolve(
        ToyTask.presets,
        assignments=[
            "train.epochs=1",
            "train.batch_size=1",
            "train.warmup_epochs=0",
            "train.eval_interval=0",
            "train.steps_per_epoch=1",
        ],
    )
    assert (config.train.epochs, config.train.eval_interval, config.train.steps_per_epoch) == (1, 0, 1)


def test_bounds_hold_for_the_resolved_config_not_for_each_source(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  epochs: 0\n")
    assert resolve(ToyTask.presets, yaml_path=path, flags={"train.epochs": 5}).train.epochs == 5
    with pytest.raises(ConfigError, match=r"^train\.epochs=0: must be at least 1$"):
        resolve(ToyTask.presets, yaml_path=path)


@dataclasses.dataclass
class Window:
    low: int = 0
    high: int = 10

    def check(self):
        if self.high <= self.low:
            yield "high", f"must be above low ({self.low})"


@dataclasses.dataclass
class Windowed:
    window: Window = dataclasses.field(default_factory=Window)


def test_any_section_declares_its_bounds_with_a_check_method():
    assert resolve({"default": Windowed()}, assignments=["window.high=3"]).window.high == 3
    with pytest.raises(ConfigError, match=r"^window\.high=2: must be above low \(4\)$"):
        resolve({"default": Windowed()}, assignments=["window.low=4", "window.high=2"])


def test_a_run_config_out_of_bounds_exits_2_before_making_a_run_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(ToyTask(), ["train", "--project", str(tmp_path), "--epochs", "0"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "python -m apps.toy train: error: train.epochs=0: must be at least 1\n"
    assert list(tmp_path.iterdir()) == []


def test_yaml_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: config file not found"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping of config keys, got list"):
        load_yaml(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("train:\n  epochs: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("train:\n  epoks: 3\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown config key 'train\.epoks'"):
        resolve(ToyTask.presets, yaml_path=tmp_path / "typo.yaml")


def test_set_without_equals_sign_is_an_error():
    with pytest.raises(ConfigError, match=r"--set 'train\.epochs': expected key=value"):
        resolve(ToyTask.presets, assignments=["train.epochs"])


def test_saved_config_loads_back_to_the_same_config(tmp_path):
    config = resolve(ToyTask.presets, "wide", assignments=["train.step_milestones=[3, 6]", "train.clipnorm=1.5"])
    save_config(config, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["step_milestones"] == [3, 6]
    assert resolve(ToyTask.presets, "small", yaml_path=tmp_path / "config.yaml") == config


def test_program_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(ToyTask(), ["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and out.startswith("usage: python -m apps.toy [-h] COMMAND ...")
    for name, text in COMMANDS.items():
        assert f"  {name:<8} {text}\n" in out


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_help_lists_every_option_with_its_default(command, capsys):
    with pytest.raises(SystemExit):
        main(ToyTask(), [command, "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    names = flag_names(ToyConfig())
    for leaf in leaves(ToyTask.presets["small"]):
        assert f"[{leaf.path}: " in out and f"(default: {leaf.default!r})" in out
        assert f"--{names[leaf.path]}" in out
    for option in ("--preset", "--config YAML", "--set KEY=VALUE", "(default: small; new runs only)"):
        assert option in out
    run_options = {
        "train": [
            "--project PROJECT",
            "(default: runs/toy)",
            "--name NAME",
            "(default: exp)",
            "--exist-ok",
            "--resume [RUN]",
        ],
        "predict": ["--out OUT", "(default: <run>/predict)", "sources"],
        "qat": ["--steps INT", "[qat.steps: int] (default: 3)"],
        "export": [
            "--format",
            "(default: all)",
            "--saved-models SAVED_MODELS",
            "(default: saved_models)",
            "--score, --no-score",
        ],
        "bench": ["--runs RUNS", "(default: 50)", "--warmup WARMUP", "--threads"],
        "data": ["--run RUN", "(default: none: the config options alone)"],
    }
    if command not in ("train", "data"):
        run_options.setdefault(command, []).extend(["--run RUN", "(required)", "--weights WEIGHTS", "(default: best)"])
    for option in run_options.get(command, []):
        assert option in out, option


def test_user_errors_exit_2_with_one_message_and_no_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(ToyTask(), ["train", "--project", str(tmp_path), "--set", "train.optimizer=lamb"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert err == "python -m apps.toy train: error: --set: train.optimizer='lamb' is not a valid 'sgd'|'adam'|'adamw'\n"
    with pytest.raises(SystemExit) as exit_:
        main(ToyTask(), ["eval", "--run", str(tmp_path / "nope")])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr().err == f"python -m apps.toy eval: error: {tmp_path / 'nope'}: not a run folder "
        f"(no config.yaml); train first or pass --run\n"
    )


def test_data_command_prints_the_task_report(capsys):
    assert main(ToyTask(), ["data", "--train-samples", "40", "--batch-size", "16"]) == 0
    assert '"train": {\n    "batches": 3,\n    "samples": 40\n  }' in capsys.readouterr().out


def test_run_names_increment_like_ultralytics(tmp_path):
    assert [runs.new_run_dir(tmp_path).name for _ in range(3)] == ["exp", "exp2", "exp3"]
    assert [runs.new_run_dir(tmp_path, "quick").name for _ in range(2)] == ["quick", "quick2"]
    assert runs.new_run_dir(tmp_path, "quick", exist_ok=True) == tmp_path / "quick"


def test_run_names_must_be_one_folder():
    with pytest.raises(AppError, match=r"--name '\.\./up': use letters"):
        runs.safe_name("../up")


def test_exponent_floats_without_a_dot_are_floats_from_flags_and_yaml(tmp_path):
    """YAML 1.1 reads ``4e-3`` as a string; a float setting takes it as 0.004 from a flag and from a file."""
    base = TrainConfig()
    assert apply_overrides(base, {"learning_rate": parse_text("4e-3")}, "--learning-rate").learning_rate == 0.004
    path = tmp_path / "exp.yaml"
    path.write_text("learning_rate: 1E-4\nmin_lr_ratio: .5e-1\n")
    config = apply_overrides(base, load_yaml(path), str(path))
    assert (config.learning_rate, config.min_lr_ratio) == (1e-4, 0.05)
    with pytest.raises(ConfigError, match="epochs='4e-3' is not a valid int"):
        apply_overrides(base, {"epochs": parse_text("4e-3")}, "--epochs")
