"""The detect app's config: model, dataset, loss and post-process sections, and the named presets.

Every field is a setting of ``python -m apps.detect COMMAND`` (``--help`` lists them): by
direct flag (``--data``, ``--images``, ``--backbone``, ``--epochs``), by dotted key
(``--set model.neck=rcnet``) or from YAML. The first preset, ``demo``, is what
``python -m apps.detect train`` runs with no arguments: a small RetinaNet (MobileNetV2-0.5,
RCNet neck and heads of 64 channels with batch norm, P3-P6, 256 px) trained from scratch on the
built-in demo dataset on a CPU.

The presets of the architectures their papers train from ImageNet (``ssdlite_mobilenet_v2``,
``retinanet_resnet50_fpn`` / ``_rcnet``, the latter on keras.applications' ResNet-50 layout)
start the backbone from keras.applications' ImageNet weights, downloaded by keras into
``~/.keras/models`` on first use; offline and without that file they train from scratch with
a warning (``backbone_weights: imagenet_if_available``; ``--backbone-weights imagenet`` makes
its absence an error, ``--backbone-weights null`` trains from scratch). ``demo`` trains from scratch.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from vision_core.app.config import IMAGENET_IF_AVAILABLE, BackboneConfig, QATConfig, TrainConfig, setting


@dataclasses.dataclass
class ModelConfig(BackboneConfig):
    """The detector (see :func:`apps.detect.models.build_detector`)."""

    architecture: Literal["ssd", "ssdlite", "retinanet"] = setting("retinanet", "detector architecture")
    backbone: str = setting("resnet50", "registered backbone (python -m vision_core.backbones list)")
    input_size: int = setting(512, "square input side in pixels (images are stretched to it)")
    bn_momentum: float | None = setting(
        None,
        "momentum of every batch norm's moving statistics (null: each architecture's own, e.g. 0.999 in MobileNetV2)",
    )
    neck: Literal["fpn", "rcnet"] = setting("fpn", "RetinaNet neck: fpn or rcnet (RevFP + CSN)")
    neck_channels: int = setting(256, "RetinaNet: channels of the pyramid levels")
    levels: tuple[int, ...] = setting(
        (3, 4, 5, 6, 7), "RetinaNet: pyramid levels the head predicts on (3..7 = strides 8..128)"
    )
    head_depth: int = setting(4, "RetinaNet: 3x3 convs in each subnet before the predictor")
    head_channels: int = setting(256, "RetinaNet: channels of the subnet convs")
    head_norm: bool = setting(
        False,
        "RetinaNet: batch norm after the subnet convs, per level (not in the paper; speeds up training from scratch)",
    )
    anchor_size: float = setting(4.0, "RetinaNet: anchor base size in strides (4 -> 32 px on P3)")
    scales_per_octave: int = setting(3, "RetinaNet: anchor scales per level (2^(i/n), i < n)")
    aspect_ratios: tuple[float, ...] = setting((0.5, 1.0, 2.0), "RetinaNet: anchor aspect ratios (width/height)")
    ssd_first_level: int = setting(4, "SSD: first prediction layer is C<level> of the backbone (4 -> stride 16)")
    ssd_layers: int = setting(6, "SSD: prediction layers (backbone levels, then extra layers)")
    ssd_min_scale: float = setting(0.2, "SSD: default-box scale of the first layer (fraction of the input)")
    ssd_max_scale: float = setting(0.95, "SSD: default-box scale of the last layer")
    ssd_aspect_ratios: tuple[float, ...] = setting((1.0, 2.0, 0.5, 3.0, 1 / 3), "SSD: default-box aspect ratios")
    ssd_reduce_lowest_layer: bool = setting(True, "SSD: 3 boxes on the first layer, as MobileNet-SSD")


@dataclasses.dataclass
class DatasetConfig:
    """Where the images and boxes come from; with no ``data``, the built-in demo dataset."""

    data: str | None = setting(
        None, "COCO .json / VOC folder / YOLO .yaml or folder of the training split (null: the built-in demo dataset)"
    )
    images: str | None = setting(None, "COCO/VOC image root of the training split (default: beside the annotations)")
    val: str | None = setting(None, "the validation split, as data (null: the 'val' split of a dataset folder)")
    val_images: str | None = setting(None, "image root of the validation split")
    class_names: tuple[str, ...] = setting((), "VOC/YOLO class names when the dataset does not list them")
    demo_dir: str = setting("datasets/detect-demo", "folder of the generated demo dataset (made on first use)")
    demo_train: int = setting(3000, "demo training images")
    demo_val: int = setting(200, "demo validation images")
    demo_min_size: float = setting(0.06, "demo: smallest shape side as a fraction of the image side")
    demo_min_visible: float = setting(0.7, "demo: smallest visible fraction of a partly covered shape")
    augment: bool = setting(True, "random crop, flip and colour jitter on training images")
    crop_probability: float = setting(0.5, "chance of a random resized crop per training image")
    workers: int = setting(2, "images decoded and augmented in parallel")


@dataclasses.dataclass
class LossConfig:
    """Anchor matching and the loss (focal for RetinaNet, MultiBox for SSD)."""

    positive_iou: float = setting(0.5, "anchors with IoU >= this to a box are positives")
    negative_iou: float = setting(0.4, "anchors with IoU < this to every box are background (between: ignored)")
    focal_alpha: float = setting(0.25, "RetinaNet focal loss alpha")
    focal_gamma: float = setting(2.0, "RetinaNet focal loss gamma")
    negative_ratio: float = setting(3.0, "SSD hard-negative mining: negatives per positive")
    box_weight: float = setting(1.0, "weight of the box regression loss")


@dataclasses.dataclass
class PostProcessSettings:
    """Decoding and NMS, in Keras and in the exported ``TFLite_Detection_PostProcess`` op."""

    score_threshold: float = setting(0.05, "detections scoring below this are dropped")
    iou_threshold: float = setting(0.5, "per-class NMS IoU threshold")
    max_detections: int = setting(100, "detections kept per image")


@dataclasses.dataclass
class DetectConfig:
    model: ModelConfig = setting(factory=ModelConfig)
    dataset: DatasetConfig = setting(factory=DatasetConfig)
    loss: LossConfig = setting(factory=LossConfig)
    postprocess: PostProcessSettings = setting(factory=PostProcessSettings)
    qat: QATConfig = setting(factory=QATConfig)
    train: TrainConfig = setting(factory=TrainConfig)


def _preset(
    model: ModelConfig, train: TrainConfig, loss: LossConfig | None = None, dataset: DatasetConfig | None = None
) -> DetectConfig:
    return DetectConfig(model=model, dataset=dataset or DatasetConfig(), loss=loss or LossConfig(), train=train)


def _retinanet_resnet50(neck: str) -> DetectConfig:
    """The RetinaNet paper's ResNet-50 recipe at 512 px, on keras.applications' layout (its ImageNet file)."""
    return _preset(
        ModelConfig(architecture="retinanet", backbone="resnet50", backbone_variant="keras", input_size=512, neck=neck),
        TrainConfig(
            epochs=50,
            batch_size=16,
            optimizer="sgd",
            learning_rate=0.01,
            weight_decay=1e-4,
            clipnorm=10.0,
            backbone_weights=IMAGENET_IF_AVAILABLE,
        ),
    )


SSD_LOSS = LossConfig(positive_iou=0.5, negative_iou=0.5)

PRESETS = {
    "demo": _preset(
        ModelConfig(
            architecture="retinanet",
            backbone="mobilenet_v2",
            backbone_alpha=0.5,
            input_size=256,
            bn_momentum=0.9,
            neck="rcnet",  # the seed's neck: demo mAP@.5 0.95 where FPN's spread 0.80-0.84 (benchmarks/README.md)
            neck_channels=64,
            levels=(3, 4, 5, 6),
            head_depth=2,
            head_channels=64,
            head_norm=True,
            anchor_size=2.0,
            scales_per_octave=2,
        ),
        TrainConfig(
            epochs=4,
            batch_size=8,
            optimizer="adam",
            learning_rate=8e-3,
            weight_decay=0.0,
            warmup_epochs=1 / 3,
            clipnorm=10.0,
            eval_interval=2,
        ),
        dataset=DatasetConfig(crop_probability=0.0),
    ),
    "ssdlite_mobilenet_v2": _preset(
        ModelConfig(architecture="ssdlite", backbone="mobilenet_v2", input_size=320),
        TrainConfig(
            epochs=100,
            batch_size=32,
            optimizer="sgd",
            learning_rate=0.04,
            weight_decay=4e-5,
            backbone_weights=IMAGENET_IF_AVAILABLE,
        ),
        SSD_LOSS,
    ),
    "ssd_resnet50": _preset(
        ModelConfig(
            architecture="ssd",
            backbone="resnet50",
            input_size=512,
            ssd_first_level=3,
            ssd_layers=7,
            ssd_min_scale=0.07,
            ssd_reduce_lowest_layer=False,
        ),
        TrainConfig(epochs=100, batch_size=32, optimizer="sgd", learning_rate=0.02, weight_decay=5e-4),
        SSD_LOSS,
    ),
    "retinanet_resnet50_fpn": _retinanet_resnet50("fpn"),
    "retinanet_resnet50_rcnet": _retinanet_resnet50("rcnet"),
}
