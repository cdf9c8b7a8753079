"""Typed experiment configs: dataclasses with named presets, overridden from YAML and flags.

A task's config is a (possibly nested) dataclass. Every leaf field is a setting with a
type, a default and a one-line help (:func:`setting`); sections are nested dataclasses,
addressed with dotted keys (``train.epochs``). One config is resolved in this order,
later sources winning::

    preset (a named config instance)  <  --config file.yaml  <  --set key=value  <  direct flags

Values from YAML and flags are checked against the field's annotation (``int``, ``float``,
``str``, ``bool``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]`` / ``list[X]``); a bad key
or value raises :class:`ConfigError` naming the key, the value and where it came from.
A section may also bound its values: a ``check()`` method yielding ``(field, requirement)``
for each value out of bounds (``TrainConfig.check``: ``epochs`` at least 1, ...). Bounds hold
for the resolved config, not for each source in turn, so :func:`resolve` checks every
section once all sources are applied (:func:`check_config`).
The resolved config is written back as YAML (:func:`save_config`), and that file loaded
with ``--config`` on top of the same dataclass reproduces the config exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeAlias

import yaml

from vision_core.errors import ConfigError
from vision_core.storage.atomic import write_atomic

EXPONENT_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")
IMAGENET = "imagenet"  # train.backbone_weights: keras.applications' ImageNet file (vision_core.app.transfer)
IMAGENET_IF_AVAILABLE = "imagenet_if_available"  # the same, or from scratch with a warning when it cannot be had
Config: TypeAlias = Any  # an instance of an app's config dataclass; the apps' dataclasses share no base class


# Returns a dataclasses.Field typed Any, as dataclasses.field's own stub does, so ``epochs: int = setting(...)`` checks.
def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Any = dataclasses.MISSING,
    flag_alone: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with a help line, shown by ``--help`` (use ``factory`` for lists/sections).

    ``flag_alone``: the value of the direct flag given without one (``--freeze-backbone`` alone); by
    default the flag needs a value.
    """
    metadata = {"help": help}
    if flag_alone is not dataclasses.MISSING:
        metadata["flag_alone"] = flag_alone
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One settable field: dotted ``path``, resolved ``annotation``, ``default`` value and ``help``;
    ``flag_alone`` is the value of its flag given alone (``dataclasses.MISSING``: the flag needs one)."""

    path: str
    annotation: Any
    default: Any
    help: str
    flag_alone: Any = dataclasses.MISSING


def _hints(config_class: type) -> dict[str, Any]:
    """Resolved field annotations (config dataclasses must be defined at module level)."""
    return typing.get_type_hints(config_class)


def leaves(config: Any, prefix: str = "") -> list[Leaf]:
    """Every leaf setting of a config instance (or class), depth first, in field order."""
    instance = config() if isinstance(config, type) else config
    hints = _hints(type(instance))
    out = []
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if dataclasses.is_dataclass(value):
            out.extend(leaves(value, f"{prefix}{field.name}."))
        else:
            out.append(
                Leaf(
                    f"{prefix}{field.name}",
                    hints[field.name],
                    value,
                    field.metadata.get("help", ""),
                    field.metadata.get("flag_alone", dataclasses.MISSING),
                )
            )
    return out


def type_name(annotation: Any) -> str:
    """A short readable name of a field type (``int``, ``'sgd'|'adamw'``, ``float | None``)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "|".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join("None" if a is type(None) else type_name(a) for a in typing.get_args(annotation))
    if origin in (tuple, list):
        return f"{origin.__name__}[{type_name(typing.get_args(annotation)[0])}, ...]"
    return getattr(annotation, "__name__", str(annotation))


def check_value(annotation: Any, value: Any, key: str, source: str) -> Any:
    """``value`` converted to ``annotation`` (int -> float, list -> tuple) or :class:`ConfigError`."""

    def bad() -> ConfigError:
        return ConfigError(f"{source}: {key}={value!r} is not a valid {type_name(annotation)}")

    origin = typing.get_origin(annotation)
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise bad()
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return check_value(option, value, key, source)
            except ConfigError:
                continue
        raise bad()
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad()
        item = typing.get_args(annotation)[0]
        return origin(check_value(item, v, f"{key}[{i}]", source) for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if annotation is float:
        # YAML 1.1 reads "4e-3" (no dot) as a string; people write learning rates that way.
        if isinstance(value, str) and EXPONENT_FLOAT.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise bad()
        return value
    raise ConfigError(f"{key}: unsupported field type {type_name(annotation)}")


def parse_text(text: str) -> Any:
    """A flag's text as a YAML scalar or list (``3`` -> 3, ``[1, 2]`` -> [1, 2], ``null`` -> None)."""
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"train.epochs=3"`` -> ``("train.epochs", 3)``; :class:`ConfigError` without ``=``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key=value (for example train.epochs=3)")
    return key.strip(), parse_text(value)


def apply_overrides(config: Any, overrides: Mapping[str, Any], source: str) -> Any:
    """A copy of ``config`` with dotted-key ``overrides`` applied and type-checked.

    ``source`` names where the overrides came from (a file, ``--set``, a flag) in errors.
    """
    config = copy.deepcopy(config)
    known = {leaf.path: leaf for leaf in leaves(config)}
    for key, value in overrides.items():
        if key not in known:
            sections = sorted({p.rsplit(".", 1)[0] for p in known if "." in p})
            hint = f" (it is a section: set one of its keys, e.g. {key}.<key>)" if key in sections else ""
            raise ConfigError(f"{source}: unknown config key {key!r}{hint}; known keys: {', '.join(known)}")
        checked = check_value(known[key].annotation, value, key, source)
        *parents, name = key.split(".")
        target = config
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, name, checked)
    return config


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> dotted keys (``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}``)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The dotted-key overrides of a YAML file; :class:`ConfigError` naming the file if unusable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return flatten(data)


def resolve(
    presets: Mapping[str, Any],
    preset: str | None = None,
    yaml_path: str | Path | None = None,
    assignments: list[str] | tuple[str, ...] = (),
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """The config of ``preset`` (default: the first) < YAML file < ``--set`` assignments < direct ``flags``.

    ``flags`` maps dotted keys to already-parsed values (only flags the user gave).
    """
    name = preset or next(iter(presets))
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(presets)}")
    config = copy.deepcopy(presets[name])
    if yaml_path is not None:
        config = apply_overrides(config, load_yaml(yaml_path), str(yaml_path))
    if assignments:
        config = apply_overrides(config, dict(parse_assignment(a) for a in assignments), "--set")
    names = flag_names(config)
    for key, value in (flags or {}).items():
        config = apply_overrides(config, {key: value}, f"--{names.get(key, key)}")
    check_config(config)
    return config


def check_config(config: Any, prefix: str = "") -> None:
    """:class:`ConfigError` for the first value out of its section's bounds, naming the dotted key and value.

    Every section (the root included) that defines ``check()`` is asked, depth first; ``check()``
    yields ``(field name, requirement)`` for each of its values out of bounds (e.g.
    ``("epochs", "must be at least 1")``).
    """
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            check_config(value, f"{prefix}{field.name}.")
    check = getattr(config, "check", None)
    for name, requirement in check() if check else ():
        raise ConfigError(f"{prefix}{name}={getattr(config, name)!r}: {requirement}")


def flag_names(config: Any) -> dict[str, str]:
    """``{dotted key: direct flag}``: the key's last part with dashes (``train.batch_size`` ->
    ``batch-size``), or the whole dotted key with dashes when two sections share that name."""
    paths = [leaf.path for leaf in leaves(config)]
    short = [p.rsplit(".", 1)[-1] for p in paths]
    return {p: (s if short.count(s) == 1 else p.replace(".", "-")).replace("_", "-") for p, s in zip(paths, short)}


def to_dict(config: Any) -> dict[str, Any]:
    """A nested plain-data dict of ``config`` (tuples as lists), ready for YAML or JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def save_config(config: Any, path: str | Path) -> Path:
    """Write ``config`` as YAML atomically; loading it with ``--config`` reproduces ``config``."""
    text = yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None)
    return write_atomic(path, text.encode())


@dataclasses.dataclass
class BackboneConfig:
    """The backbone settings every app's model section shares: an app's ``ModelConfig`` inherits them (and
    may redeclare ``backbone`` with its own default)."""

    backbone: str = setting("resnet18", "registered backbone (python -m vision_core.backbones list)")
    backbone_alpha: float = setting(1.0, "MobileNetV2 width multiplier (mobilenet_v2 only)")
    backbone_variant: str | None = setting(
        None,
        "ResNet layout (resnet* only): v1.5, keras (keras.applications' ResNet50/101, the layout of its "
        "ImageNet weights), d or rs (null: v1.5)",
    )
    backbone_layout: Literal["tf", "torch"] = setting(
        "tf",
        "how the backbone pads strided convs: tf ('same'), or torch, to compute exactly what a timm or official "
        "PyTorch checkpoint (--backbone-weights FILE.safetensors|.pth) computes in PyTorch",
    )

    def backbone_options(self) -> dict:
        """The ``build_backbone`` options of these settings (:func:`vision_core.backbones.backbone_options`)."""
        from vision_core.backbones import backbone_options

        return backbone_options(self.backbone, self.backbone_alpha, self.backbone_variant, self.backbone_layout)

    def backbone_spec(self, input_shape: tuple[int, int, int]) -> tuple[str, tuple[int, int, int], dict]:
        """``(name, input shape, build options)`` of the registered backbone these settings build."""
        return self.backbone, tuple(input_shape), self.backbone_options()


@dataclasses.dataclass
class TrainConfig:
    """The trainer's section of every task config (``train.*``); tasks nest it as ``train``."""

    epochs: int = setting(100, "training epochs")
    batch_size: int = setting(16, "global batch size (split across replicas)")
    optimizer: Literal["sgd", "adam", "adamw"] = setting("adamw", "optimizer")
    learning_rate: float = setting(1e-3, "peak learning rate (reached at the end of warm-up)")
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(1e-4, "decoupled weight decay (sgd, adamw); 0 turns it off")
    clipnorm: float | None = setting(None, "clip each gradient to this L2 norm (null: no clipping)")
    schedule: Literal["cosine", "step", "constant"] = setting("cosine", "learning-rate decay after warm-up")
    warmup_epochs: float = setting(1.0, "linear warm-up length in epochs (fractions allowed), in each cycle")
    cycles: int = setting(
        1,
        "run the warm-up and decay this many times over the epochs, each from the peak "
        "again (warm restarts); must divide epochs",
    )
    min_lr_ratio: float = setting(0.01, "cosine: final learning rate as a fraction of the peak")
    step_milestones: tuple[int, ...] = setting(
        (), "step: epochs at which the learning rate is multiplied by step_gamma"
    )
    step_gamma: float = setting(0.1, "step: learning-rate factor at each milestone")
    ema: bool = setting(False, "keep an exponential moving average of the weights; evaluation and checkpoints use it")
    ema_decay: float = setting(0.999, "EMA momentum per step")
    mixed_precision: Literal["auto", "on", "off"] = setting(
        "auto", "mixed float16 (GPU) / bfloat16 (TPU); auto: on when a GPU or TPU is used"
    )
    strategy: Literal["auto", "default", "mirrored", "multi_worker", "tpu"] = setting(
        "auto", "tf.distribute strategy; auto: mirrored on 2+ GPUs, else default; multi_worker reads TF_CONFIG"
    )
    seed: int = setting(0, "seed of Python, NumPy, TensorFlow and Keras random generators")
    steps_per_epoch: int | None = setting(None, "batches per epoch (null: one pass over the training set)")
    eval_interval: int = setting(1, "run the task's evaluator every N epochs (0: Keras validation only)")
    jit_compile: bool = setting(False, "XLA-compile the train step (slower on CPU: keep off there)")
    init_weights: str | None = setting(
        None,
        "a .weights.npz (e.g. another run's weights/best.weights.npz) copied "
        "into the model by variable path before training; variables it "
        "lacks keep their initialisation, a shape mismatch is an error",
    )
    backbone_weights: str | None = setting(
        None,
        "pretrained backbone, copied in after the model is built (and after init_weights), before training: "
        "imagenet = keras.applications' ImageNet file (resnet50/resnet101 with the keras backbone variant, "
        "mobilenet_v2 of alpha 0.35/0.5/0.75/1/1.3/1.4), downloaded by keras into ~/.keras/models "
        "($KERAS_HOME/models) on first use (that run needs the network), read from there afterwards; "
        "imagenet_if_available = the same, but when the file can be neither found nor downloaded, train from "
        "scratch with a warning (the presets' default); or a path: a keras.applications .h5, or a "
        ".weights.npz (e.g. another run's weights/best.weights.npz; a classifier's head is ignored), or a "
        "PyTorch checkpoint of the backbone: timm's .safetensors or an official release's .pth/.pt/.bin "
        "(ResNet, MobileNetV2, VoVNet, EMOv2, RevCol; read without torch, never running code from the file). Every "
        "backbone variable must be found with its shape, else nothing is loaded (null: from scratch)",
    )
    freeze_backbone: int = setting(
        0,
        "epochs during which the backbone does not train (its batch norms in inference mode), from the first; "
        "-1 = the whole training, also what the flag alone means (0: never frozen)",
        flag_alone=-1,
    )
    backbone_lr_ratio: float = setting(
        1.0,
        "the backbone's learning rate (and its weight decay step) as a fraction of the head's "
        "(1.0: the same; 0.1 is common when fine-tuning from ImageNet)",
    )

    def check(self) -> Iterator[tuple[str, str]]:
        """``(field, requirement)`` of each value out of bounds (see :func:`check_config`)."""
        if self.epochs < 1:
            yield "epochs", "must be at least 1"
        if self.batch_size < 1:
            yield "batch_size", "must be at least 1"
        if not self.learning_rate > 0:
            yield "learning_rate", "must be greater than 0"
        if not self.warmup_epochs >= 0:
            yield "warmup_epochs", "must be 0 or more"
        if self.eval_interval < 0:
            yield "eval_interval", "must be 0 (Keras validation only) or more"
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            yield "steps_per_epoch", "must be null (one pass over the training set) or at least 1"
        if self.freeze_backbone < -1:
            yield "freeze_backbone", "must be -1 (the whole training), 0 (never) or a number of epochs"
        if not self.backbone_lr_ratio > 0:
            yield "backbone_lr_ratio", "must be greater than 0 (freeze the backbone with freeze_backbone)"


@dataclasses.dataclass
class QATConfig:
    """Quantization-aware fine-tuning, the ``qat`` command's section of every task config (``qat.*``).

    The fine-tune runs in a tf_keras child process (:mod:`vision_core.quant.qat_job`); the
    same calibration images also calibrate the post-training int8 export.
    """

    steps: int = setting(100, "QAT fine-tune steps")
    fine_tune_lr: float = setting(1e-4, "Adam learning rate of the QAT fine-tune")
    fine_tune_batch: int = setting(8, "images per QAT fine-tune step")
    fine_tune_images: int = setting(256, "training images the QAT fine-tune cycles through (without augmentation)")
    fine_tune_target: Literal["task", "distillation"] = setting(
        "task",
        "what the QAT fine-tune fits: the task's loss on the labels, or the float model's logits "
        "(distillation: keeps the float model's predictions)",
    )
    freeze_batch_norm: bool = setting(
        True, "batch norms keep the float statistics, scale and offset in the QAT fine-tune"
    )
    calibration_images: int = setting(64, "images that calibrate int8 activation ranges (QAT and post-training)")
    weight_rounding: Literal["nearest", "gptq"] = setting(
        "nearest",
        "int8 weights of the post-training export and the QAT fine-tune's start: each rounded to its nearest "
        "step, or GPTQ (layer by layer, rounding errors compensated through the calibration images' "
        "input statistics; slower, for models whose outputs are images)",
    )
    calibration_ranges: Literal["batch_mean", "min_max"] = setting(
        "batch_mean", "QAT activation ranges: mean of the calibration batches' min/max, or min/max over all"
    )
