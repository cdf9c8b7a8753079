"""The superres app's config: model and dataset sections, and one preset per ESPCN variant.

Every field is a setting of ``python -m apps.superres COMMAND`` (``--help`` lists them). The first
preset, ``espcn_x3_y``, is what ``python -m apps.superres train`` runs with no arguments: the paper's
ESPCN layers (64-32 features, 5-3-3 kernels) at x3 on the Y channel with ReLU, trained on the
built-in demo images (240 training and 24 validation images of 240x240, written as PNGs on first use)
with MSE on random 24x24 input patches, each the busiest of 4 (``dataset.patch_candidates``), for 60
epochs. ``espcn_x3_y_tanh`` is the paper's tanh model; ``espcn_x2_y`` / ``espcn_x4_y`` are the other
scales, ``espcn_x3_rgb`` the RGB model, ``espcn_x3_y_residual`` (tanh, 20 epochs) learns the difference
from nearest-neighbour upscaling (not in the paper), and ``espcn_x3_y_wide`` (128-64) /
``espcn_x3_y_deep`` (64-64-64-32) trade speed for quality. Measured (benchmarks/README.md,
"Super-resolution"): the default gains +1.76 dB over bicubic on the demo validation images in
9 minutes on the 2-core CPU; tanh gains less, and loses more in int8 (its int8 output grid is fixed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Literal

from vision_core.app.config import QATConfig, TrainConfig, setting


@dataclasses.dataclass
class ModelConfig:
    """The ESPCN model (see :func:`apps.superres.models.build_espcn`)."""

    scale: int = setting(3, "upscaling factor (2, 3 or 4 are the papers' settings)")
    colour: Literal["y", "rgb"] = setting(
        "y", "what the model sees: y (BT.601 luma, Cb/Cr upscaled by bicubic; the paper's) or rgb"
    )
    features: tuple[int, ...] = setting((64, 32), "channels of each low-resolution feature layer (paper: 64, 32)")
    kernels: tuple[int, ...] = setting(
        (5, 3, 3), "kernel size of each feature layer and of the sub-pixel convolution (paper: 5, 3, 3)"
    )
    activation: Literal["tanh", "relu"] = setting("tanh", "activation of the feature layers (paper: tanh)")
    residual: bool = setting(
        False,
        "learn the difference from nearest-neighbour upscaling (the input added to the sub-pixel conv; "
        "not in the paper, converges in far fewer steps)",
    )
    export_size: tuple[int, ...] = setting(
        (360, 640),
        "input (height, width) of the exported models (640x360 -> 1920x1080 at x3); the TFLite files "
        "run at any size (the input is resized), ONNX at other sizes in tiles",
    )
    serving_any_size: bool = setting(
        False,
        "the SavedModel and ONNX exports take any input size (TFLite files stay at export_size, where "
        "on-device runtimes plan their memory, and are resized at run time)",
    )

    def check(self) -> Iterator[tuple[str, str]]:
        if self.scale < 2:
            yield "scale", "must be 2 or more"
        if len(self.kernels) != len(self.features) + 1:
            yield "kernels", f"needs {len(self.features) + 1} sizes: one per feature layer and the sub-pixel conv"
        if len(self.export_size) != 2 or min(self.export_size) < 1:
            yield "export_size", "must be (height, width), both at least 1"


@dataclasses.dataclass
class DatasetConfig:
    """Where the high-resolution images come from; with no ``data``, the built-in demo images."""

    data: str | None = setting(
        None,
        "training high-resolution images: a folder of images, or a folder holding train/ and val/ "
        "(null: the built-in demo images)",
    )
    val: str | None = setting(None, "validation high-resolution images (null: <data>/val)")
    lr_data: str | None = setting(
        None,
        "low-resolution inputs of data: a folder of <name>x<scale>.<ext> or <name>.<ext>, or one holding "
        "X<scale>/ (DIV2K) (null: made from data by MATLAB's bicubic)",
    )
    lr_val: str | None = setting(None, "low-resolution inputs of val, as lr_data (null: bicubic)")
    demo_dir: str = setting("datasets/superres-demo", "folder of the generated demo images (made on first use)")
    demo_train: int = setting(240, "demo: training images")
    demo_val: int = setting(24, "demo: validation images")
    demo_size: int = setting(240, "demo: image side in pixels (a multiple of 12)")
    patch_size: int = setting(24, "training input patch side in low-resolution pixels")
    patches_per_image: int = setting(16, "random patches taken from each training image per epoch")
    augment: bool = setting(True, "random flips and 90-degree rotations of training patches")
    patch_candidates: int = setting(
        1, "draw this many random patches and train on the one whose target varies most (1: plain random)"
    )

    def check(self) -> Iterator[tuple[str, str]]:
        if self.patch_size < 4:
            yield "patch_size", "must be at least 4"
        if self.patch_candidates < 1:
            yield "patch_candidates", "must be at least 1"
        if self.patches_per_image < 1:
            yield "patches_per_image", "must be at least 1"
        if self.demo_size % 12:
            yield "demo_size", "must be a multiple of 12"


@dataclasses.dataclass
class SuperResConfig:
    model: ModelConfig = setting(factory=ModelConfig)
    dataset: DatasetConfig = setting(factory=DatasetConfig)
    train: TrainConfig = setting(factory=TrainConfig)
    qat: QATConfig = setting(factory=QATConfig)


# Int8: GPTQ rounds the weights on 32 export-size calibration images (nearest rounding of the last
# conv alone cost 0.14 dB); QAT then fine-tunes on training patches with the task's MSE at a rate
# that keeps the weights on their GPTQ steps (1e-5 drifted off them: -0.14 dB instead of -0.06).
ESPCN_QAT = QATConfig(
    steps=300,
    fine_tune_lr=1e-6,
    fine_tune_batch=16,
    fine_tune_images=1024,
    fine_tune_target="task",
    weight_rounding="gptq",
    calibration_images=32,
)


def espcn_preset(
    scale: int = 3,
    colour: str = "y",
    features: tuple[int, ...] = (64, 32),
    kernels: tuple[int, ...] = (5, 3, 3),
    residual: bool = False,
    activation: str = "relu",
    epochs: int = 60,
) -> SuperResConfig:
    """ESPCN on the demo images: Adam at 1e-3 with cosine decay, batch 16, no weight decay, each patch the
    busiest of 4."""
    return SuperResConfig(
        model=ModelConfig(
            scale=scale, colour=colour, features=features, kernels=kernels, residual=residual, activation=activation
        ),
        dataset=DatasetConfig(patch_candidates=4),
        train=TrainConfig(
            epochs=epochs,
            batch_size=16,
            optimizer="adam",
            learning_rate=1e-3,
            weight_decay=0.0,
            warmup_epochs=0.5,
            min_lr_ratio=0.01,
            seed=36,
        ),
        qat=dataclasses.replace(ESPCN_QAT),
    )


PRESETS = {
    "espcn_x3_y": espcn_preset(3),
    "espcn_x3_y_tanh": espcn_preset(3, activation="tanh"),
    "espcn_x2_y": espcn_preset(2),
    "espcn_x4_y": espcn_preset(4),
    "espcn_x3_rgb": espcn_preset(3, "rgb"),
    "espcn_x3_y_residual": espcn_preset(3, residual=True, activation="tanh", epochs=20),
    "espcn_x3_y_wide": espcn_preset(3, features=(128, 64)),
    "espcn_x3_y_deep": espcn_preset(3, features=(64, 64, 64, 32), kernels=(5, 3, 3, 3, 3)),
}
