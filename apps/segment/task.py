"""The segment app as the shared CLI, trainer and shipping see it (:class:`vision_core.app.task.Task`).

Data: ``dataset.data`` (``images/`` + ``masks/`` folders, :func:`load_segmentation_dataset`) or, when
it is empty, the built-in demo scenes written to ``dataset.demo_dir/<size>px`` on first use.
Batches are ``(images float32 [B, S, S, 3] = (pixels - 127.5) / 127.5, masks int32 [B, S, S])``.
Every form of a model (the Keras model of a run, a ``.keras``, ``.tflite`` or ``.onnx`` export) is
scored by the same evaluator (:func:`evaluate_segmenter`: one pixel confusion matrix at each image's
own size, the ignore index excluded) through a runner that returns class scores.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from apps.segment.config import PRESETS, SegmentConfig
from vision_core.app.task import BackboneSpec, Task
from vision_core.errors import AppError
from vision_core.logs import get_logger

log = get_logger()
MEAN, STD = 127.5, 127.5  # pixels -> [-1, 1], as the other apps


class SegmentTask(Task):
    name = "segment"
    description = (
        "Semantic segmentation (FFNet-style, LR-ASPP, DeepLabv3+) on any registered backbone, from image/mask "
        "folders (or the built-in demo scenes) to int8 TFLite with MediaPipe metadata, ONNX and TF Serving."
    )
    presets = PRESETS
    headline_metric = "mIoU"
    headline_mode = "max"
    float_onnx_outputs = ("masks",)  # the served class_map is its arg-max: an int, held equal by the masks

    def __init__(self):
        self._splits: dict[tuple, Any] = {}

    # data -----------------------------------------------------------------------------------------------------
    def splits(self, config: SegmentConfig):
        """``(train, val)`` :class:`SegmentationDataset` of the config (the demo when ``data`` is empty)."""
        from vision_core.data.segmentation import load_segmentation_dataset, write_segment_shapes

        settings = config.dataset
        key = tuple(dataclasses.asdict(settings).items())
        if key in self._splits:
            return self._splits[key]
        names = list(settings.class_names) or None
        try:
            if settings.data is None:
                data = write_segment_shapes(
                    Path(settings.demo_dir) / f"{settings.demo_size}px",
                    train=settings.demo_train,
                    val=settings.demo_val,
                    size=settings.demo_size,
                )
            else:
                data = settings.data
            train = load_segmentation_dataset(data, "train", names, settings.ignore_index)
            val = load_segmentation_dataset(
                settings.val or data, "val", names or train.class_names, settings.ignore_index
            )
        except (OSError, ValueError) as error:
            raise AppError(str(error)) from None
        for split in (train, val):
            if not len(split):
                raise AppError(f"{split.source}: the {split.split} split has no image/mask pairs")
        self._splits[key] = (train, val)
        return train, val

    def validate(self, config: SegmentConfig) -> None:
        """Pair both splits' files (cached): a missing folder or no class names stops ``train`` before its run
        folder is made."""
        self.splits(config)

    def class_names(self, config: SegmentConfig) -> tuple[str, ...]:
        return self.splits(config)[0].class_names

    def _pipeline(self, split, config: SegmentConfig, shuffle: bool, augment: bool = False):
        from vision_core.data.segmentation import make_segmentation_dataset

        batch = config.train.batch_size
        dataset = make_segmentation_dataset(
            split,
            config.model.input_size,
            batch,
            shuffle=shuffle,
            augment=augment,
            seed=config.train.seed,
            mean=MEAN,
            std=STD,
            workers=config.dataset.workers,
        )
        # an unreadable pair is skipped mid-epoch; repeating keeps every epoch at its known number of batches
        return dataset.repeat().take(math.ceil(len(split) / batch))

    def datasets(self, config: SegmentConfig):
        train, val = self.splits(config)
        return (
            self._pipeline(train, config, shuffle=True, augment=config.dataset.augment),
            self._pipeline(val, config, shuffle=False),
        )

    def representative_data(self, config: SegmentConfig, batches: int = 8):
        """Training images in a seeded shuffle, without augmentation."""
        train, _ = self.splits(config)
        for images, _masks in self._pipeline(train, config, shuffle=True).take(batches):
            yield np.asarray(images, np.float32)

    def check_data(self, config: SegmentConfig) -> dict[str, Any]:
        from vision_core.data.segmentation import check_segmentation_dataset

        report: dict[str, Any] = {}
        problems = 0
        for dataset in self.splits(config):
            checked = check_segmentation_dataset(dataset, config.dataset.workers)
            log.info("%s\n", checked.table())
            report[dataset.split] = checked.to_dict()
            problems += sum(issue.count for issue in checked.errors)
        report["problems"] = problems
        return report

    # model ----------------------------------------------------------------------------------------------------
    def model_kwargs(self, config: SegmentConfig) -> dict[str, Any]:
        return {"num_classes": len(self.class_names(config)), **dataclasses.asdict(config.model)}

    def build_model(self, config: SegmentConfig):
        from apps.segment.models import build_segmenter

        try:
            return build_segmenter(**self.model_kwargs(config))
        except (KeyError, ValueError) as error:
            raise AppError(str(error)) from None

    def backbone(self, config: SegmentConfig) -> BackboneSpec:
        from apps.segment.models import backbone_spec

        try:
            return BackboneSpec(*backbone_spec(config.model))
        except ValueError as error:
            raise AppError(str(error)) from None

    def compile_args(self, config: SegmentConfig) -> dict[str, Any]:
        from apps.segment.losses import segmentation_loss

        return {"loss": segmentation_loss(config.dataset.ignore_index)}

    # evaluation and prediction -------------------------------------------------------------------------------
    def runner(self, model):
        """A segmenter runner of a Keras model or an exported file (``.keras``, ``.tflite``, ``.onnx``)."""
        from vision_core.segmentation.runners import load_segmenter_runner

        try:
            return load_segmenter_runner(model, mean=MEAN, std=STD)
        except (OSError, ValueError) as error:
            raise AppError(str(error)) from None

    def evaluate(self, model, config: SegmentConfig) -> dict[str, Any]:
        from vision_core.segmentation.evaluate import evaluate_segmenter

        _, val = self.splits(config)
        return evaluate_segmenter(self.runner(model), val, config.model.input_size, MEAN, STD)

    def colors(self, config: SegmentConfig) -> np.ndarray:
        from vision_core.segmentation.draw import class_colors

        train, _ = self.splits(config)
        return class_colors(train.num_classes, train.colors)

    def plots(self, model, config: SegmentConfig, metrics: dict, out_dir: Path, suffix: str = "") -> dict[str, Path]:
        """The pixel confusion matrix (rows: true class) and a gallery of image / truth / prediction overlays
        of the first ``dataset.gallery`` validation images."""
        from vision_core.classification.plots import plot_confusion_matrix
        from vision_core.segmentation.draw import write_gallery
        from vision_core.segmentation.evaluate import class_maps, pairs

        out_dir = Path(out_dir)
        written = {
            "confusion_matrix": plot_confusion_matrix(
                metrics["confusion_matrix"],
                self.class_names(config),
                out_dir / f"confusion_matrix{suffix}.png",
                title="pixel confusion matrix",
                unit="pixels",
            )
        }
        count = config.dataset.gallery
        if count:
            _, val = self.splits(config)
            shown = [pair for pair, _ in zip(pairs(val, {}), range(count))]
            predicted = class_maps(
                self.runner(model), [image for image, _ in shown], config.model.input_size, MEAN, STD
            )
            rows = [(image, mask, p) for (image, mask), p in zip(shown, predicted)]
            written["gallery"] = write_gallery(rows, self.colors(config), out_dir / f"gallery{suffix}.png")
        return written

    def predict(self, model, sources: list[str], config: SegmentConfig, out_dir: Path) -> dict[str, Any]:
        """Overlays (videos: an overlay video), index PNGs and per-class pixel counts (``predictions.json``, per
        image and per video frame) of image and video files and folders."""
        from vision_core.segmentation.predict import RESULTS_FILE, predict_sources

        counts = predict_sources(
            self.runner(model),
            sources,
            out_dir,
            self.class_names(config),
            self.colors(config),
            config.model.input_size,
            MEAN,
            STD,
        )
        return {"json": str(Path(out_dir) / RESULTS_FILE), "out_dir": str(out_dir), **counts}

    # shipping (the framework's vision_core.app.ship) -------------------------------------------------------------
    def model_info(self, config: SegmentConfig, name: str):
        from tflite.metadata import ModelInfo

        return ModelInfo(
            "segmentation",
            name,
            list(self.class_names(config)),
            mean=[MEAN],
            std=[STD],
            description=self.description,
            activation="none",  # the shipped model ends in its softmax (output "masks")
        )

    def inference(self, config: SegmentConfig):
        return "apps.segment.models:with_probabilities", {}

    def serving_postprocess(self, config: SegmentConfig):
        """Both SavedModel signatures serve ``class_map`` (int32 [N, H, W], the arg-max) beside ``masks``."""
        return with_class_map

    def qat_builder(self, config: SegmentConfig):
        return "apps.segment.models:build_segmenter", self.model_kwargs(config)

    def qat_loss(self, config: SegmentConfig):
        return "apps.segment.losses:qat_cross_entropy", {"ignore_index": config.dataset.ignore_index}


def with_class_map(outputs: dict) -> dict:
    """The segmenter's outputs plus ``class_map``: int32 [N, H, W], the arg-max of ``masks`` [N, H, W, K]."""
    from vision_core.backend import tf

    return {**outputs, "class_map": tf.argmax(outputs["masks"], axis=-1, output_type=tf.int32)}
