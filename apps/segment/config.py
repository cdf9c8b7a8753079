"""The segment app's config: model and dataset sections, and the named presets.

Every field is a setting of ``python -m apps.segment COMMAND`` (``--help`` lists them). The first
preset, ``demo``, is what ``python -m apps.segment train`` runs with no arguments: the FFNet-style
model (the mobile head ``B`` at half width, nearest-neighbour upsampling, output stride 4) on
ResNet-18, 96 px, trained from scratch on the built-in demo scenes (background and four shape
classes, written as PNG pairs to ``datasets/segment-shapes`` on first use) on a CPU.

The other presets are the architectures as their papers ship them, at 512 px, starting the
backbone from keras.applications' ImageNet weights when they can be had
(``backbone_weights: imagenet_if_available``): ``ffnet_mobile`` / ``ffnet_gpu`` (FFNet's head types
``B`` with nearest and ``A`` with bilinear upsampling, on ResNet-50 in keras.applications' layout),
``lraspp_mobilenet_v2`` and ``deeplabv3plus_resnet50``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Literal

from vision_core.app.config import IMAGENET_IF_AVAILABLE, BackboneConfig, QATConfig, TrainConfig, setting


@dataclasses.dataclass
class ModelConfig(BackboneConfig):
    """The segmenter (see :func:`apps.segment.models.build_segmenter`)."""

    architecture: Literal["ffnet", "lraspp", "deeplabv3plus"] = setting("ffnet", "segmentation head")
    input_size: int = setting(512, "square input side in pixels (images are stretched to it)")
    output_stride: int = setting(4, "stride of the head's logits before the resize to the input: 4 or 8")
    upsample: Literal["bilinear", "nearest"] = setting(
        "bilinear", "interpolation of the head's upsampling (FFNet's mobile models: nearest)"
    )
    ffnet_head: Literal["A", "B", "C"] = setting(
        "B", "FFNet: head type of the official code (A: the GPU models' widths, B: the mobile models', C)"
    )
    head_width: float = setting(1.0, "FFNet: multiplier of every head width")
    lraspp_channels: int = setting(128, "LR-ASPP: channels of the high-level branch")
    aspp_channels: int = setting(256, "DeepLabv3+: channels of ASPP and the decoder")
    aspp_rates: tuple[int, ...] = setting(
        (3, 6, 9), "DeepLabv3+: atrous rates on C5 (stride 32; the paper's 6/12/18 are for stride 16)"
    )
    bn_momentum: float | None = setting(None, "momentum of every batch norm (null: each architecture's own)")

    def check(self) -> Iterator[tuple[str, str]]:
        if self.output_stride not in (4, 8):
            yield "output_stride", "must be 4 or 8"
        if self.input_size % 32:
            yield "input_size", "must be a multiple of 32 (the backbone's C5 stride)"


@dataclasses.dataclass
class DatasetConfig:
    """Where the images and masks come from; with no ``data``, the built-in demo scenes."""

    data: str | None = setting(
        None,
        "dataset folder: images/ + masks/ (per split or for all), Pascal VOC (SegmentationClass, ImageSets/"
        "Segmentation) or Cityscapes (leftImg8bit, gtFine labelIds -> 19 train ids) (null: the built-in demo dataset)",
    )
    val: str | None = setting(None, "the validation split's folder (null: the 'val' split of data)")
    class_names: tuple[str, ...] = setting(
        (), "class names by mask value (empty: the dataset's classes.yaml, or VOC's / Cityscapes' classes)"
    )
    ignore_index: int = setting(255, "mask value that is neither trained on nor scored")
    demo_dir: str = setting("datasets/segment-shapes", "folder of the generated demo dataset (made on first use)")
    demo_train: int = setting(2000, "demo training scenes")
    demo_val: int = setting(200, "demo validation scenes")
    demo_size: int = setting(96, "demo image side in pixels")
    augment: bool = setting(True, "random scale/shift, flip and colour jitter on training pairs")
    workers: int = setting(2, "pairs decoded and augmented in parallel")
    gallery: int = setting(8, "validation images in the overlay gallery (0: none)")

    def check(self) -> Iterator[tuple[str, str]]:
        if not 0 <= self.ignore_index <= 255:
            yield "ignore_index", "must be in 0..255 (masks are 8-bit)"


@dataclasses.dataclass
class SegmentConfig:
    model: ModelConfig = setting(factory=ModelConfig)
    dataset: DatasetConfig = setting(factory=DatasetConfig)
    qat: QATConfig = setting(factory=QATConfig)
    train: TrainConfig = setting(factory=TrainConfig)


def _paper(model: ModelConfig, learning_rate: float = 0.01) -> SegmentConfig:
    """A 512 px preset from ImageNet: SGD with polynomial-like cosine decay, as the papers train."""
    return SegmentConfig(
        model=model,
        train=TrainConfig(
            epochs=100,
            batch_size=8,
            optimizer="sgd",
            learning_rate=learning_rate,
            weight_decay=1e-4,
            backbone_weights=IMAGENET_IF_AVAILABLE,
        ),
    )


PRESETS = {
    "demo": SegmentConfig(
        model=ModelConfig(
            architecture="ffnet",
            backbone="resnet18",
            input_size=96,
            upsample="nearest",
            ffnet_head="B",
            head_width=0.5,
            bn_momentum=0.9,
        ),
        train=TrainConfig(
            epochs=5,
            batch_size=16,
            optimizer="adam",
            learning_rate=2e-3,
            weight_decay=0.0,
            warmup_epochs=0.3,
            min_lr_ratio=0.0,
            eval_interval=2,
        ),
        qat=QATConfig(steps=100, fine_tune_lr=1e-5, fine_tune_batch=8, calibration_images=64),
    ),
    "ffnet_mobile": _paper(
        ModelConfig(
            architecture="ffnet", backbone="resnet50", backbone_variant="keras", upsample="nearest", ffnet_head="B"
        )
    ),
    "ffnet_gpu": _paper(
        ModelConfig(
            architecture="ffnet", backbone="resnet50", backbone_variant="keras", upsample="bilinear", ffnet_head="A"
        )
    ),
    "lraspp_mobilenet_v2": _paper(
        ModelConfig(architecture="lraspp", backbone="mobilenet_v2", output_stride=8), learning_rate=0.02
    ),
    "deeplabv3plus_resnet50": _paper(
        ModelConfig(architecture="deeplabv3plus", backbone="resnet50", backbone_variant="keras")
    ),
}
