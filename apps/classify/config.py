"""The classify app's config: model and dataset sections, and one preset per backbone's shapes recipe.

Every field is a setting of ``python -m apps.classify COMMAND`` (``--help`` lists them). The
first preset, ``shapes_resnet18``, is what ``python -m apps.classify train`` runs with no
arguments: ResNet-18 on the built-in shapes (8000 training and 400 held-out 64x64 images,
written as PNG class folders on first use). Each ``shapes_<backbone>`` preset is the recipe
measured in ``benchmarks/README.md`` ("Int8 accuracy of trained classifiers"): Adam with a
warm-up over a tenth of each cycle, then cosine decay to 0, batch norms at momentum 0.9
(the papers' 0.99-0.999 lag a few hundred steps of weights). RevCol trains its first column
alone first (``shapes_revcol_*_column0``), then the full model from those weights
(``--init-weights``): its four columns do not learn the task from scratch in a CPU budget.
"""

from __future__ import annotations

import dataclasses

from vision_core.app.config import QATConfig, TrainConfig, setting
from vision_core.backbones import list_backbones


@dataclasses.dataclass
class ModelConfig:
    """The classifier (see :func:`apps.classify.models.build_classifier`)."""

    backbone: str = setting("resnet18", "registered backbone (python -m vision_core.backbones list)")
    backbone_alpha: float = setting(1.0, "MobileNetV2 width multiplier (mobilenet_v2 only)")
    backbone_variant: str | None = setting(
        None,
        "ResNet layout (resnet* only): v1.5, keras (keras.applications' ResNet50/101, the layout of its "
        "ImageNet weights), d or rs (null: v1.5)",
    )
    input_size: int = setting(64, "square input side in pixels (images are resized to it)")
    channels: int = setting(3, "input channels: 3 (RGB) or 1 (grey)")
    bn_momentum: float | None = setting(
        0.9, "momentum of every batch norm's moving statistics (null: each architecture's own)"
    )
    layer_scale_init: float | None = setting(None, "RevCol: initial ConvNeXt layer scale (null: the paper's 1e-6)")
    first_column_only: bool = setting(
        False,
        "RevCol: build its first column alone (a warm start whose weights "
        "initialise the full model through --init-weights)",
    )


@dataclasses.dataclass
class DatasetConfig:
    """Where the images and labels come from; with no ``data``, the built-in shapes."""

    data: str | None = setting(
        None,
        "class folders (train/<class>/*.png, val/<class>/*.png) or a CSV "
        "(path,label[,split]) (null: the built-in shapes)",
    )
    val: str | None = setting(None, "the validation split, as data (null: the 'val' split of data)")
    class_names: tuple[str, ...] = setting(
        (), "class names in output order (default: sorted folder names or CSV labels); a label outside them is an error"
    )
    demo_dir: str = setting("datasets/classify-shapes", "folder of the generated shapes (made on first use)")
    demo_train: int = setting(8000, "shapes: training images")
    demo_val: int = setting(400, "shapes: held-out images")
    augment: bool = setting(True, "random horizontal flips of training images")
    min_per_class: int = setting(2, "data check: a class with fewer images is reported")
    workers: int = setting(2, "images decoded in parallel (data check)")


@dataclasses.dataclass
class ClassifyConfig:
    model: ModelConfig = setting(factory=ModelConfig)
    dataset: DatasetConfig = setting(factory=DatasetConfig)
    train: TrainConfig = setting(factory=TrainConfig)
    qat: QATConfig = setting(factory=QATConfig)


SHAPES_LEARNING_RATE = 2e-3
# Backbones the common 3 epochs at 2e-3 leave short, and what they need (benchmarks/README.md,
# "How the recipes were reached"): epochs of one cycle, peak rate, cycles, model options.
RECIPES: dict[str, dict] = {
    "resnet50": {"epochs": 6, "learning_rate": 1e-3},
    "resnet101": {"epochs": 10, "learning_rate": 1e-3},
    "mobilenet_v2": {"epochs": 6},
    "vovnet57": {"cycles": 2},
    "revcol_t": {"learning_rate": 1e-4, "layer_scale_init": 1.0},
    "revcol_s": {"learning_rate": 1e-4, "layer_scale_init": 1.0, "cycles": 2},
    "revcol_b": {"learning_rate": 1e-4, "layer_scale_init": 1.0},
}
REVCOL_COLUMN0 = {"epochs": 6, "learning_rate": 3e-4, "layer_scale_init": 1.0, "first_column_only": True}
# QAT of a shapes classifier: 100 steps distilling the float logits at 1e-6, batch norms frozen
# (benchmarks/README.md, "QAT fine-tune"); 128 training images calibrate every int8 form.
SHAPES_QAT = QATConfig(
    steps=100,
    fine_tune_lr=1e-6,
    fine_tune_batch=16,
    fine_tune_images=1024,
    fine_tune_target="distillation",
    calibration_images=128,
)


def shapes_preset(
    backbone: str,
    epochs: int = 3,
    learning_rate: float = SHAPES_LEARNING_RATE,
    cycles: int = 1,
    layer_scale_init: float | None = None,
    first_column_only: bool = False,
) -> ClassifyConfig:
    """``backbone`` on the built-in shapes: ``epochs`` per cycle, ``cycles`` warm-up + cosine cycles."""
    return ClassifyConfig(
        model=ModelConfig(backbone=backbone, layer_scale_init=layer_scale_init, first_column_only=first_column_only),
        dataset=DatasetConfig(augment=False),
        train=TrainConfig(
            epochs=epochs * cycles,
            cycles=cycles,
            batch_size=32,
            optimizer="adam",
            learning_rate=learning_rate,
            weight_decay=0.0,
            warmup_epochs=epochs / 10,
            min_lr_ratio=0.0,
            seed=7,
        ),
        qat=dataclasses.replace(SHAPES_QAT),
    )


def _presets() -> dict[str, ClassifyConfig]:
    names = ["resnet18", *(name for name in list_backbones() if name != "resnet18")]
    presets = {f"shapes_{name}": shapes_preset(name, **RECIPES.get(name, {})) for name in names}
    for name in (n for n in names if n.startswith("revcol")):
        presets[f"shapes_{name}_column0"] = shapes_preset(name, **REVCOL_COLUMN0)
    return presets


PRESETS = _presets()
