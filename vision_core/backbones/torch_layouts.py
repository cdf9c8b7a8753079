"""PyTorch checkpoints of every backbone family mapped onto our variable paths.

Each family has one rule: our layer name -> the source module (or parameter) it comes from. A
variable's source tensor is then ``<module>.weight`` for a kernel or gamma, ``.bias`` for a
bias or beta, ``.running_mean`` / ``.running_var`` for batch-norm statistics, and arrays change
layout on the way:

* conv kernels OIHW -> HWIO; depthwise ``(C, 1, kh, kw)`` -> ``(kh, kw, C, 1)``;
* linear layers ``(out, in)`` -> a dense kernel ``(in, out)``, or a 1x1 conv ``(1, 1, in, out)``
  where we use a conv for a PyTorch ``nn.Linear`` (RevCol's pointwise layers);
* per-channel scales ``(1, C, 1, 1)`` -> ``(C,)`` or a 1x1 depthwise kernel.

Sources, by family (the convention is recognised from the names):

* ResNet v1.5 and ResNet-D: timm's and torchvision's names (``conv1``, ``layer1.0.conv1``,
  ``downsample.0``, ``fc``); ResNet-D's deep stem ``conv1.0/.1/.3/.4/.6`` and average-pool
  shortcut ``downsample.1/.2``. Build with ``explicit_padding=True`` to compute what PyTorch does.
* MobileNetV2: timm's names (``conv_stem``, ``blocks.S.I.conv_pw``, ``conv_head``, ``classifier``);
  build with ``bn_epsilon=1e-5, torch_padding=True``.
* VoVNet: timm's ``ese_vovnet*`` (``stages.S.blocks.B.conv_mid.I``) and the official
  vovnet-detectron2 release (``stage2.OSA2_1.OSA2_1_0/conv``, eSE on every block: build with
  ``ese_on_every_block=True``); build with ``torch_padding=True``.
* EMOv2: the official release (``stage0.0.conv``, ``stage1.0.eops.0.net.conv``, ``head``).
* RevCol: the official release (``subnet0.level0.blocks.0.dwconv``); its training-only parts
  (column 0's unused scales, the intermediate classifiers ``cls_blocks.0-2`` and the image
  decoders) are ignored and the last classifier is the head.

Every tensor of the checkpoint must be used, be a batch-norm counter (``num_batches_tracked``),
a training-only part of the family, or the classifier head when the model has none; anything
else, and every variable without its tensor, is an :class:`AppError` naming them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from vision_core.errors import AppError

SHOWN = 20
Rule = Callable[[str], tuple[str, str]]  # our layer name -> (source module, kernel layout)

LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "conv": lambda a: a.transpose(2, 3, 1, 0),
    "depthwise": lambda a: a.transpose(2, 3, 0, 1),
    "dense": lambda a: a.T,
    "linear_as_conv": lambda a: a.T[None, None],
    "channel_kernel": lambda a: a.reshape(1, 1, -1, 1),
    "channel_vector": lambda a: a.reshape(-1),
}
SUFFIXES = {"bias": "bias", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
DETECTOR_PREFIXES = ("backbone.bottom_up.", "backbone.body.", "backbone.")


class UnknownLayer(KeyError):
    """A layer the family's rule does not know."""


def _match(patterns: list[tuple[str, Callable[..., tuple[str, str]]]], layer: str) -> tuple[str, str]:
    for pattern, make in patterns:
        found = re.fullmatch(pattern, layer)
        if found:
            return make(*found.groups())
    raise UnknownLayer(layer)


def resnet_rule(avg_down: bool = False, deep_stem: bool = False) -> Rule:
    """timm / torchvision ResNet names (v1.5 and ResNet-D)."""
    shortcut = (1, 2) if avg_down else (0, 1)  # timm's avg-pool shortcut: Sequential(pool, conv, bn)
    stem = {"stem1_conv": "conv1.0", "stem1_bn": "conv1.1", "stem2_conv": "conv1.3", "stem2_bn": "conv1.4"}
    stem.update(
        {"stem3_conv": "conv1.6", "stem3_bn": "bn1"} if deep_stem else {"conv1_conv": "conv1", "conv1_bn": "bn1"}
    )

    def block(stage, index, part, kind):
        module = f"layer{int(stage) - 1}.{int(index) - 1}"
        if part == "0":
            return f"{module}.downsample.{shortcut[kind == 'bn']}", "conv"
        return f"{module}.{kind}{part}", "conv"

    patterns = [
        (r"conv(\d)_block(\d+)_(\d)_(conv|bn)", block),
        (r"predictions", lambda: ("fc", "dense")),
        (r"(\w+)", lambda name: (stem[name], "conv")),
    ]
    return lambda layer: _match(patterns, layer)


def mobilenet_v2_rule(repeats: tuple[int, ...]) -> Rule:
    """timm MobileNetV2 names; ``repeats``: our blocks per stage (block_id -> blocks.S.I)."""
    position = [(stage, i) for stage, n in enumerate(repeats) for i in range(n)]
    parts = {"expand": "conv_pw", "expand_BN": "bn1", "depthwise": "conv_dw", "depthwise_BN": "bn2"}
    parts.update(project="conv_pwl", project_BN="bn3")
    first = {"depthwise": "conv_dw", "depthwise_BN": "bn1", "project": "conv_pw", "project_BN": "bn2"}

    def block(block_id, part):
        stage, i = position[int(block_id)]
        return f"blocks.{stage}.{i}.{parts[part]}", "depthwise" if part == "depthwise" else "conv"

    patterns = [
        (
            r"expanded_conv_(\w+)",
            lambda part: (f"blocks.0.0.{first[part]}", "depthwise" if part == "depthwise" else "conv"),
        ),
        (r"block_(\d+)_(\w+)", block),
        (r"predictions", lambda: ("classifier", "dense")),
        (
            r"(Conv1|bn_Conv1|Conv_1|Conv_1_bn)",
            lambda name: (
                {"Conv1": "conv_stem", "bn_Conv1": "bn1", "Conv_1": "conv_head", "Conv_1_bn": "bn2"}[name],
                "conv",
            ),
        ),
    ]
    return lambda layer: _match(patterns, layer)


def vovnet_timm_rule(separable: bool) -> Rule:
    """timm ``ese_vovnet*`` names; ``separable``: the depthwise (DW) variants."""

    def unit(module: str, kind: str, sep: bool):
        if kind == "dwconv":
            return f"{module}.conv_dw", "depthwise"
        if kind == "conv":
            return f"{module}.{'conv_pw' if sep else 'conv'}", "conv"
        return f"{module}.bn", "conv"

    def osa(stage, block, part, kind):
        module = f"stages.{int(stage) - 2}.blocks.{int(block) - 1}"
        if part in ("reduction", "concat"):
            return unit(f"{module}.conv_{part}", kind, False)
        return unit(f"{module}.conv_mid.{int(part[5:]) - 1}", kind, separable)

    patterns = [
        (r"stage(\d)_osa(\d+)_ese_fc", lambda s, b: (f"stages.{int(s) - 2}.blocks.{int(b) - 1}.attn.fc", "conv")),
        (r"stage(\d)_osa(\d+)_(reduction|concat|layer\d+)_(conv|bn|dwconv)", osa),
        (r"stem(\d)_(conv|bn|dwconv)", lambda i, kind: unit(f"stem.{int(i) - 1}", kind, separable and i != "1")),
        (r"predictions", lambda: ("head.fc", "dense")),
    ]
    return lambda layer: _match(patterns, layer)


def vovnet_detectron2_rule(separable: bool) -> Rule:
    """The official vovnet-detectron2 names (no classifier)."""

    def unit(module: str, name: str, kind: str, sep: bool):
        if kind == "dwconv":
            return f"{module}.{name}/dw_conv3x3", "depthwise"
        if sep:
            return f"{module}.{name}/{'pw_conv1x1' if kind == 'conv' else 'pw_norm'}", "conv"
        return f"{module}.{name}/{'conv' if kind == 'conv' else 'norm'}", "conv"

    def osa(stage, block, part, kind):
        name = f"OSA{stage}_{block}"
        module = f"stage{stage}.{name}"
        if part == "reduction":
            return unit(f"{module}.conv_reduction", f"{name}_reduction_0", kind, False)
        if part == "concat":
            return unit(f"{module}.concat", f"{name}_concat", kind, False)
        return unit(f"{module}.layers.{int(part[5:]) - 1}", f"{name}_{int(part[5:]) - 1}", kind, separable)

    patterns = [
        (r"stage(\d)_osa(\d+)_ese_fc", lambda s, b: (f"stage{s}.OSA{s}_{b}.ese.fc", "conv")),
        (r"stage(\d)_osa(\d+)_(reduction|concat|layer\d+)_(conv|bn|dwconv)", osa),
        (r"stem(\d)_(conv|bn|dwconv)", lambda i, kind: unit("stem", f"stem_{i}", kind, separable and i != "1")),
    ]
    return lambda layer: _match(patterns, layer)


def emov2_rule() -> Rule:
    """The official EMOv2 names."""
    stem = {
        "stem_conv_conv": ("stage0.0.conv", "conv"),
        "stem_conv_bn": ("stage0.0.norm", "conv"),
        "stem_local_dwconv": ("stage0.1.conv", "depthwise"),
        "stem_local_bn": ("stage0.1.norm", "conv"),
        "stem_pointwise": ("stage0.2.conv", "conv"),
        "head_norm": ("norm.norm", "conv"),
        "predictions": ("head", "dense"),
    }
    parts = {
        "expand_conv": ("eops.0.net.conv", "conv"),
        "attention/qk": ("eops.0.qk.conv", "conv"),
        "attention/v": ("eops.0.v.conv", "conv"),
        "local_dwconv": ("conv_local.conv", "depthwise"),
        "local_bn": ("conv_local.norm", "conv"),
        "proj": ("proj.conv", "conv"),
        "layer_scale": ("ls.gamma", "channel_kernel"),
    }

    def block(stage, index, part):
        if part == "norm":
            # Stages 1-2 pre-normalise with BatchNorm2d, 3-4 with LayerNorm2d (an nn.LayerNorm inside).
            return f"stage{stage}.{int(index) - 1}.norm" + (".norm" if int(stage) > 2 else ""), "conv"
        module, layout = parts[part]
        return f"stage{stage}.{int(index) - 1}.{module}", layout

    patterns = [
        (
            r"stage(\d)_block(\d+)_(norm|expand_conv|attention/qk|attention/v|local_dwconv|local_bn|proj|layer_scale)",
            block,
        ),
        (r"(\w+)", lambda name: stem[name]),
    ]
    return lambda layer: _match(patterns, layer)


def revcol_rule(single_head: bool) -> Rule:
    """The official RevCol names. The head is the last of the intermediate-supervision classifiers
    (``cls_blocks.3``, the ImageNet-1k releases) or, for a model trained without them, ``cls``."""
    head = "cls.classifier" if single_head else "cls_blocks.3.classifier"

    def level(column, lvl, rest):
        module = f"subnet{column}.level{lvl}"
        fixed = {
            "down_conv": (f"{module}.fusion.down.0", "conv"),
            "down_norm": (f"{module}.fusion.down.1", "conv"),
            "up_proj": (f"{module}.fusion.up.channel_reschedule.0", "linear_as_conv"),
            "up_norm": (f"{module}.fusion.up.channel_reschedule.1", "conv"),
            "reversible_scale": (f"subnet{column}.alpha{lvl}", "channel_vector"),
        }
        if rest in fixed:
            return fixed[rest]
        block, part = re.fullmatch(r"block(\d+)_(\w+)", rest).groups()
        module = f"{module}.blocks.{block}"
        return {
            "dwconv": (f"{module}.dwconv", "depthwise"),
            "norm": (f"{module}.norm", "conv"),
            "pwconv1": (f"{module}.pwconv1", "linear_as_conv"),
            "pwconv2": (f"{module}.pwconv2", "linear_as_conv"),
            "layer_scale": (f"{module}.gamma", "channel_vector"),
        }[part]

    patterns = [
        (r"column(\d+)_level(\d)_(\w+)", level),
        (r"stem_conv", lambda: ("stem.0", "conv")),
        (r"stem_norm", lambda: ("stem.1", "conv")),
        (r"head_norm", lambda: (f"{head}.0", "conv")),
        (r"predictions", lambda: (f"{head}.1", "dense")),
    ]
    return lambda layer: _match(patterns, layer)


def ignorable(family: str, name: str) -> bool:
    """A checkpoint tensor no variable needs: batch-norm counters and the family's training-only parts."""
    if name.endswith("num_batches_tracked"):
        return True
    if family == "revcol":
        return bool(re.match(r"(subnet0\.alpha\d|cls_blocks\.[0-2]\.|decoder_blocks\.)", name))
    return False


HEADS = {
    "resnet": ("fc.",),
    "mobilenet_v2": ("classifier.",),
    "vovnet": ("head.fc.",),
    "emov2": ("head.", "norm.norm."),
    "revcol": ("cls_blocks.3.", "cls."),
}


def family_of(backbone: str) -> str:
    for family in ("resnet", "mobilenet_v2", "vovnet", "emov2", "revcol"):
        if family in backbone:
            return family
    raise AppError(f"no PyTorch layout known for backbone {backbone!r}")


def rule_for(backbone: str, options: dict, names) -> Rule:
    """The family rule of ``build_backbone(backbone, **options)`` for a checkpoint with tensor ``names``."""
    family = family_of(backbone)
    if family == "resnet":
        from vision_core.backbones.resnet import VARIANTS

        variant = options.get("variant", "v1.5")
        if variant not in ("v1.5", "d"):
            raise AppError(f"{backbone} variant {variant!r}: PyTorch checkpoints load into variants v1.5 and d only")
        base = VARIANTS[variant]
        return resnet_rule(options.get("avg_down", base.avg_down), options.get("deep_stem", base.deep_stem))
    if family == "mobilenet_v2":
        from vision_core.backbones.mobilenet_v2 import stage_repeats

        return mobilenet_v2_rule(stage_repeats(options.get("depth_multiplier", 1.0)))
    if family == "vovnet":
        from vision_core.backbones.vovnet import SPECS

        separable = SPECS[backbone].depthwise if backbone in SPECS else bool(options.get("depthwise"))
        if any("OSA" in n for n in names):
            return vovnet_detectron2_rule(separable)
        return vovnet_timm_rule(separable)
    if family == "emov2":
        return emov2_rule()
    return revcol_rule(any(n.startswith("cls.") for n in names))


def _source(rule: Rule, path: str) -> tuple[str, str]:
    """``(source tensor name, layout)`` of our variable ``path`` (``layer[/sublayer]/variable``)."""
    layer, variable = path.rsplit("/", 1)
    module, layout = rule(layer)
    if layout in ("channel_kernel", "channel_vector"):
        return module, layout  # the module is the parameter itself
    if variable in ("kernel", "gamma"):
        return f"{module}.weight", layout if variable == "kernel" else "same"
    return f"{module}.{SUFFIXES[variable]}", "same"


def strip_detector_prefix(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A detector's checkpoint (``backbone.bottom_up.*``, ``backbone.*``): its backbone's tensors only."""
    for prefix in DETECTOR_PREFIXES:
        if any(k.startswith(prefix) for k in tensors):
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    return tensors


def convert(
    backbone: str, options: dict, paths, tensors: dict[str, np.ndarray], source: str = "checkpoint"
) -> dict[str, np.ndarray]:
    """``{our path: array}`` for the variable ``paths`` of ``build_backbone(backbone, **options)`` (or its
    classifier) from a PyTorch state dict ``tensors``; :class:`AppError` naming missing or unused tensors."""
    tensors = strip_detector_prefix(tensors)
    family = family_of(backbone)
    rule = rule_for(backbone, options, tensors)
    weights, used, missing, unknown = {}, set(), [], []
    for path in paths:
        try:
            name, layout = _source(rule, path)
        except (UnknownLayer, KeyError):
            unknown.append(path)
            continue
        if name not in tensors:
            missing.append(f"{path} <- {name}")
            continue
        array = np.asarray(tensors[name], dtype=np.float32)
        weights[path] = LAYOUTS[layout](array) if layout in LAYOUTS else array
        used.add(name)
    has_head = any(p.startswith("predictions/") for p in paths)
    unused = [
        n
        for n in tensors
        if n not in used
        and not ignorable(family, n)
        and not (not has_head and any(n.startswith(h) for h in HEADS[family]))
    ]
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} variables have no {family} source name ({', '.join(unknown[:SHOWN])})")
    if missing:
        problems.append(f"{len(missing)} of {len(paths)} variables missing in the file ({'; '.join(missing[:SHOWN])})")
    if unused:
        problems.append(f"{len(unused)} tensors of the file fit no variable ({', '.join(unused[:SHOWN])})")
    if problems:
        built = f"{backbone} {options}" if options else backbone
        raise AppError(f"{source}: does not fit {built}: " + "; ".join(problems))
    return weights


# The build options that make a family compute exactly what its PyTorch source computes, and why.
EXACT_OPTIONS = {
    "resnet": (("explicit_padding", True, "its strided convs and max pool pad as TF does, PyTorch symmetrically"),),
    "mobilenet_v2": (
        ("torch_padding", True, "its strided convs pad as TF does, PyTorch symmetrically"),
        ("bn_epsilon", 1e-5, "its batch norms use keras' epsilon 1e-3, PyTorch 1e-5"),
    ),
    "vovnet": (("torch_padding", True, "its strided convs pad as TF does, PyTorch symmetrically"),),
}


def exact_source_options(backbone: str) -> dict:
    """Build options of ``backbone`` under which PyTorch-trained weights compute exactly what they compute in
    PyTorch (empty for EMOv2 and RevCol, which always pad as PyTorch does). An app that loads PyTorch checkpoints
    adds them to its backbone options; the defaults stay keras.applications' / TF's layout."""
    return {option: value for option, value, _ in EXACT_OPTIONS.get(family_of(backbone), ())}


def source_options_note(backbone: str, options: dict) -> str | None:
    """Why ``build_backbone(backbone, **options)`` computes slightly otherwise than the PyTorch source, naming the
    options that make it exact (:func:`exact_source_options`); None when it is exact."""
    differences = [
        (why, f"{option}={value}")
        for option, value, why in EXACT_OPTIONS.get(family_of(backbone), ())
        if options.get(option) != value
    ]
    if not differences:
        return None
    return (
        f"the weights load, but {backbone} computes slightly otherwise than the source ("
        + "; ".join(why for why, _ in differences)
        + "); train with --backbone-layout torch (build options "
        + ", ".join(option for _, option in differences)
        + ") to compute exactly what the source computes"
    )
