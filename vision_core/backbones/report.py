"""Parameter and MAC counts of the backbones, beside the numbers their papers report.

Parameters are counted as PyTorch's ``parameters()`` does: every weight except batch
norm's moving statistics. MACs are multiply-accumulates of convolutions, dense layers
and matmuls at batch 1 (what papers call "FLOPs" for these models), measured by
TensorFlow's profiler on the frozen graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vision_core.backbones.registry import build_backbone, list_backbones
from vision_core.backend import tf

# Reference parameter counts (millions) and MACs (billions) at 224x224 with 1000 classes.
REFERENCES: dict[str, tuple[float | None, float | None, str]] = {
    "resnet18": (11.69, 1.82, "torchvision"),
    "resnet34": (21.80, 3.67, "torchvision"),
    "resnet50": (25.56, 4.11, "torchvision"),
    "resnet101": (44.55, 7.83, "torchvision"),
    "mobilenet_v2": (3.50, 0.30, "MobileNetV2 paper, 1.0-224"),
    "vovnet39": (22.6, None, "VoVNet paper"),
    "vovnet57": (36.6, None, "VoVNet paper"),
    "ese_vovnet19_slim": (1.9, None, "timm ese_vovnet19b_slim_dw"),
    "ese_vovnet19": (11.2, None, "timm ese_vovnet19b / official V2-19"),
    "ese_vovnet39": (24.6, None, "CenterMask paper"),
    "ese_vovnet57": (38.6, None, "timm ese_vovnet57b"),
    "emov2_1m": (1.461, 0.285, "EMOv2 official training log (paper: 1.4M)"),
    "emov2_2m": (2.384, 0.487, "EMOv2 official training log (paper: 2.3M)"),
    "emov2_5m": (5.126, 1.035, "EMOv2 official training log (paper: 5.1M)"),
    "revcol_t": (30.0, 4.5, "RevCol paper"),
    "revcol_s": (60.0, 9.0, "RevCol paper"),
    "revcol_b": (138.0, 16.6, "RevCol paper"),
}
PARAM_TOLERANCE = 0.03


def count_parameters(model) -> int:
    """Weights excluding batch norm moving mean/variance (PyTorch's ``parameters()``)."""
    return sum(
        int(np.prod(v.shape))
        for v in model.weights
        if "moving_" not in v.name and "moving_" not in getattr(v, "path", "")
    )


def count_macs(model) -> int:
    """Multiply-accumulates of one image through ``model`` (conv, dense, matmul)."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tensorflow.python.profiler import model_analyzer, option_builder

    spec = tf.TensorSpec((1, *model.inputs[0].shape[1:]), tf.float32)
    frozen = convert_variables_to_constants_v2(
        tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    )
    options = (
        option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
        .with_empty_output()
        .build()
    )
    options["account_type_regexes"] = ["Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMul.*"]
    quiet = logging.getLogger("tensorflow")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        profile = model_analyzer.profile(frozen.graph, cmd="op", options=options)
    finally:
        quiet.setLevel(level)
    return int(profile.total_float_ops) // 2


@dataclass(frozen=True)
class BackboneRow:
    name: str
    params: int
    macs: int
    reference_params_m: float | None
    reference_macs_g: float | None
    source: str

    @property
    def params_delta(self) -> float | None:
        if self.reference_params_m is None:
            return None
        return self.params / 1e6 / self.reference_params_m - 1.0


def measure(name: str, input_size: int = 224, num_classes: int = 1000) -> BackboneRow:
    model = build_backbone(name, (input_size, input_size, 3), num_classes=num_classes)
    params_m, macs_g, source = REFERENCES.get(name, (None, None, ""))
    return BackboneRow(name, count_parameters(model), count_macs(model), params_m, macs_g, source)


def format_table(rows: list[BackboneRow], markdown: bool = True) -> str:
    header = (
        "backbone",
        "params (M)",
        "MACs @224 (G)",
        "reference params (M)",
        "reference MACs (G)",
        "Δ params",
        "source",
    )
    lines = []
    for r in rows:
        delta = "" if r.params_delta is None else f"{100 * r.params_delta:+.1f}%"
        lines.append(
            (
                r.name,
                f"{r.params / 1e6:.2f}",
                f"{r.macs / 1e9:.2f}",
                "" if r.reference_params_m is None else f"{r.reference_params_m:g}",
                "" if r.reference_macs_g is None else f"{r.reference_macs_g:g}",
                delta,
                r.source,
            )
        )
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths)) for line in [header, *lines])


def all_rows(names: list[str] | None = None) -> list[BackboneRow]:
    return [measure(n) for n in (names or list_backbones())]
