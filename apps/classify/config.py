"""The classify app's config: model, dataset, loss and evaluation sections; the fundus preset and one per
backbone's shapes recipe.

Every field is a setting of ``python -m apps.classify COMMAND`` (``--help`` lists them). The
first preset, ``fundus_resnet18``, is what ``python -m apps.classify train`` runs with no
arguments: ResNet-18 on the built-in fundus demo (:mod:`vision_core.data.classification.fundus`:
referable diabetic retinopathy, two eyes per patient, split by patient), scored by ROC AUC with
its bootstrap CI. The ``shapes_resnet18`` preset trains on the built-in shapes (8000 training
and 400 held-out 64x64 images, written as PNG class folders on first use). Each
``shapes_<backbone>`` preset is the recipe measured in ``benchmarks/README.md`` ("Int8 accuracy
of trained classifiers"): Adam with a warm-up over a tenth of each cycle, then cosine decay
to 0, batch norms at momentum 0.9 (the papers' 0.99-0.999 lag a few hundred steps of weights).
RevCol trains its first column alone first (``shapes_revcol_*_column0``), then the full model from those weights
(``--init-weights``): its four columns do not learn the task from scratch in a CPU budget. The ``volumes_<net>``
presets train each volume ResNet (``r3d_18``, ``mc3_18``, ``r2plus1d_18``) on the built-in NIfTI volume demo
(:mod:`vision_core.data.classification.volumes`), with ``model.volume_shape`` set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Literal

from vision_core.app.config import BackboneConfig, QATConfig, TrainConfig, setting
from vision_core.backbones import list_backbones
from vision_core.data.classification.nifti import parse_volume_shape


@dataclasses.dataclass
class ModelConfig(BackboneConfig):
    """The classifier (see :func:`apps.classify.models.build_classifier`)."""

    input_size: int = setting(64, "square input side in pixels (images are resized to it)")
    channels: int = setting(
        3,
        "input channels: 3 (RGB; a grey image or DICOM is repeated to three, as ImageNet-style backbones take) "
        "or 1 (grey; colour images are converted)",
    )
    head: Literal["softmax", "sigmoid"] = setting(
        "softmax",
        "classifier head: softmax (one class per image) or sigmoid (multi-label: a probability per class, "
        "binary cross-entropy; a CSV with a labels column needs it)",
    )
    bn_momentum: float | None = setting(
        0.9, "momentum of every batch norm's moving statistics (null: each architecture's own)"
    )
    layer_scale_init: float | None = setting(None, "RevCol: initial ConvNeXt layer scale (null: the paper's 1e-6)")
    first_column_only: bool = setting(
        False,
        "RevCol: build its first column alone (a warm start whose weights "
        "initialise the full model through --init-weights)",
    )
    volume_shape: str | None = setting(
        None,
        "'D,H,W': classify 3D volumes (NIfTI .nii/.nii.gz, one channel) resampled to D slices of HxW, with a "
        "volume backbone: r3d_18, mc3_18 or r2plus1d_18, whose width backbone_alpha scales (null: 2D images)",
    )

    def check(self) -> Iterator[tuple[str, str]]:
        from vision_core.backbones.resnet3d import VOLUME_RESNETS

        if self.volume_shape is None:
            if self.backbone in VOLUME_RESNETS:
                yield "backbone", f"{self.backbone} classifies volumes: give volume_shape (D,H,W)"
            return
        try:
            parse_volume_shape(self.volume_shape)
        except ValueError as error:
            yield "volume_shape", str(error)
        if self.backbone not in VOLUME_RESNETS:
            yield "backbone", f"volumes need a volume backbone ({', '.join(VOLUME_RESNETS)}), not {self.backbone}"
        if self.channels != 1:
            yield "channels", "volumes have one channel: 1"


@dataclasses.dataclass
class DatasetConfig:
    """Where the images and labels come from; with no ``data``, the built-in demo of ``demo``."""

    data: str | None = setting(
        None,
        "class folders (train/<class>/*.png|*.dcm, val/<class>/...) or a CSV (path,label or multi-label "
        "path,labels with | between labels; optional split and patient_id columns; paths relative to the "
        "CSV's folder) (null: the built-in demo)",
    )
    val: str | None = setting(None, "the validation split, as data (null: the 'val' split of data)")
    class_names: tuple[str, ...] = setting(
        (), "class names in output order (default: sorted folder names or CSV labels); a label outside them is an error"
    )
    demo: Literal["fundus", "shapes", "volumes"] = setting(
        "shapes",
        "built-in demo when data is null: fundus (referable diabetic retinopathy), shapes, or volumes "
        "(NIfTI head volumes whose 3D structure sets the class; needs model.volume_shape)",
    )
    demo_dir: str = setting("datasets/classify-shapes", "folder of the generated demo (made on first use)")
    demo_patients: int = setting(1500, "fundus: patients (two eyes, two images, each); volumes: one volume each")
    demo_size: int = setting(96, "fundus: image side in pixels")
    demo_train: int = setting(8000, "shapes: training images")
    demo_val: int = setting(400, "shapes: held-out images")
    val_fraction: float = setting(
        0.2, "a CSV with patient_id and no split column: share of patients in the val split (seeded by split_seed)"
    )
    split_seed: int = setting(0, "seed of the patient split")
    window: str | None = setting(
        None,
        "DICOM window 'C,W' (centre, width, in modality units after rescale slope/intercept) for every file "
        "(null: the file's VOI LUT or window, else its full range)",
    )
    augment: bool = setting(True, "random horizontal flips of training images")
    min_per_class: int = setting(2, "data check: a class with fewer images is reported")
    workers: int = setting(2, "images decoded in parallel (data check)")

    def check(self) -> Iterator[tuple[str, str]]:
        if not 0 < self.val_fraction < 1:
            yield "val_fraction", "must be between 0 and 1"
        if self.window is not None:
            try:
                parse_window(self.window)
            except ValueError as error:
                yield "window", str(error)


def parse_window(text: str) -> tuple[float, float]:
    """``"C,W"`` -> ``(centre, width)``; ValueError unless two numbers with a width of at least 1."""
    parts = text.split(",")
    try:
        centre, width = (float(part) for part in parts)
    except ValueError:
        raise ValueError(f"expected 'C,W' (window centre and width, e.g. 40,400), got {text!r}") from None
    if width < 1:
        raise ValueError(f"window width {width} must be at least 1")
    return centre, width


@dataclasses.dataclass
class LossConfig:
    """The training loss (:class:`vision_core.classification.losses.ClassificationLoss`) and mixup."""

    class_weights: Literal["none", "balanced"] = setting(
        "none", "weight each class's loss: none, or balanced (N / (K * images of the class), from the train split)"
    )
    focal_gamma: float = setting(0.0, "focal loss exponent (0: plain cross-entropy; 2 is common)")
    label_smoothing: float = setting(0.0, "label smoothing of the targets (0: none)")
    mixup_alpha: float = setting(
        0.0, "mixup of training batches: mixing weight ~ Beta(alpha, alpha) per batch (0: no mixup; 0.2 is common)"
    )

    def check(self) -> Iterator[tuple[str, str]]:
        if self.focal_gamma < 0:
            yield "focal_gamma", "must be 0 or more"
        if not 0 <= self.label_smoothing < 1:
            yield "label_smoothing", "must be in [0, 1)"
        if self.mixup_alpha < 0:
            yield "mixup_alpha", "must be 0 (off) or more"


@dataclasses.dataclass
class EvaluationConfig:
    """The clinical evaluator (:func:`vision_core.classification.evaluate.clinical_metrics`)."""

    threshold: float | None = setting(
        None,
        "probability at which sensitivity/specificity (and multi-label F1) call a class positive "
        "(null: each class's Youden threshold on the evaluated split)",
    )
    bootstrap: int = setting(1000, "bootstrap resamples of the ROC AUC CIs (patients resampled when known)")
    ci_level: float = setting(0.95, "confidence level of the bootstrap CIs")
    graded: bool = setting(False, "the classes are ordered grades: report quadratic-weighted kappa")
    calibration_bins: int = setting(10, "equal-width bins of the expected calibration error")

    def check(self) -> Iterator[tuple[str, str]]:
        if self.bootstrap < 0:
            yield "bootstrap", "must be 0 (no CIs) or more"
        if not 0 < self.ci_level < 1:
            yield "ci_level", "must be between 0 and 1"
        if self.calibration_bins < 1:
            yield "calibration_bins", "must be at least 1"


@dataclasses.dataclass
class EnsembleConfig:
    """An ensemble run (made by ``python -m apps.classify ensemble``, see :mod:`apps.classify.ensemble`)."""

    members: tuple[str, ...] = setting(
        (),
        "config files of the runs an ensemble run combines (written by the ensemble command into <run>/members/; "
        "empty: not an ensemble)",
    )
    combine: Literal["mean", "vote"] = setting(
        "mean",
        "how an ensemble combines its members: mean of their probabilities, or majority vote "
        "(votes normalised, ties broken by mean probability)",
    )


@dataclasses.dataclass
class ClassifyConfig:
    model: ModelConfig = setting(factory=ModelConfig)
    dataset: DatasetConfig = setting(factory=DatasetConfig)
    loss: LossConfig = setting(factory=LossConfig)
    evaluation: EvaluationConfig = setting(factory=EvaluationConfig)
    ensemble: EnsembleConfig = setting(factory=EnsembleConfig)
    train: TrainConfig = setting(factory=TrainConfig)
    qat: QATConfig = setting(factory=QATConfig)


SHAPES_LEARNING_RATE = 2e-3
FUNDUS_EPOCHS = 6
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


def fundus_preset() -> ClassifyConfig:
    """ResNet-18 on the fundus demo at 96 px: referable vs non-referable diabetic retinopathy, patient split.

    Adam at 2e-3 with a warm-up over a tenth of the run, cosine to 0, flips, label smoothing 0.1 (it
    keeps the probabilities off 0 and 1, where the uint8 output's 1/256 steps tie what the float
    model ranks: without it QAT int8 lost 0.008 ROC AUC on one run); the recipe and its wall time on
    the 2-core CPU are in ``benchmarks/README.md``.
    """
    return ClassifyConfig(
        model=ModelConfig(backbone="resnet18", input_size=96),
        dataset=DatasetConfig(demo="fundus", demo_dir="datasets/classify-fundus", augment=True),
        evaluation=EvaluationConfig(graded=False),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(
            epochs=FUNDUS_EPOCHS,
            batch_size=32,
            optimizer="adam",
            learning_rate=SHAPES_LEARNING_RATE,
            weight_decay=0.0,
            warmup_epochs=FUNDUS_EPOCHS / 10,
            min_lr_ratio=0.0,
            seed=7,
        ),
        qat=dataclasses.replace(SHAPES_QAT),
    )


VOLUME_EPOCHS = 8
# QAT of a volume classifier: the shapes recipe at batch 8 (a volume is 16 slices), 64 calibration volumes.
VOLUMES_QAT = dataclasses.replace(SHAPES_QAT, steps=60, fine_tune_batch=8, fine_tune_images=480, calibration_images=64)


def volumes_preset(backbone: str) -> ClassifyConfig:
    """``backbone`` (a volume ResNet at a quarter width) on the volume demo: 300 head volumes resampled to
    16x64x64, split by patient; Adam at 2e-3 with a warm-up over a tenth of the run, cosine to 0, left-right
    mirroring; label smoothing 0.1, as the fundus preset, so the surest volumes' probabilities stay off the int8
    output's last step and their float and int8 occlusion maps still rank alike. The recipe, its wall time and
    the study behind the smoothing are in ``benchmarks/README.md`` ("Volume classifiers")."""
    return ClassifyConfig(
        model=ModelConfig(backbone=backbone, volume_shape="16,64,64", channels=1, backbone_alpha=0.25),
        dataset=DatasetConfig(demo="volumes", demo_dir="datasets/classify-volumes", demo_patients=300),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(
            epochs=VOLUME_EPOCHS,
            batch_size=8,
            optimizer="adam",
            learning_rate=SHAPES_LEARNING_RATE,
            weight_decay=0.0,
            warmup_epochs=VOLUME_EPOCHS / 10,
            min_lr_ratio=0.0,
            seed=7,
        ),
        qat=dataclasses.replace(VOLUMES_QAT),
    )


def _presets() -> dict[str, ClassifyConfig]:
    from vision_core.backbones.resnet3d import VOLUME_RESNETS

    names = ["resnet18", *(name for name in list_backbones() if name != "resnet18")]
    presets = {"fundus_resnet18": fundus_preset()}
    presets.update({f"shapes_{name}": shapes_preset(name, **RECIPES.get(name, {})) for name in names})
    for name in (n for n in names if n.startswith("revcol")):
        presets[f"shapes_{name}_column0"] = shapes_preset(name, **REVCOL_COLUMN0)
    presets.update({f"volumes_{name}": volumes_preset(name) for name in VOLUME_RESNETS})
    return presets


PRESETS = _presets()
