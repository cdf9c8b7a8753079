"""The detect app as the shared CLI and trainer see it (:class:`vision_core.app.task.Task`).

Data: ``dataset.data`` (COCO JSON, VOC folder, YOLO yaml/folder; auto-detected) or, when
it is empty, the built-in demo dataset written to ``dataset.demo_dir`` on first use.
Training batches are ``(images float32 [B, S, S, 3] in [-1, 1], targets)`` with the
targets of :mod:`apps.detect.losses`. Every form of a model — the Keras model of a run,
a ``.keras`` file, a ``.tflite`` or ``.onnx`` export — is scored by the same COCO
evaluator (:func:`vision_core.detection.evaluate.evaluate`) through a runner that maps
boxes back to the original image (xyxy absolute pixels).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from apps.detect.config import PRESETS, DetectConfig
from apps.detect.losses import BoxLoss, ClassLoss
from apps.detect.models import backbone_spec, build_detector, describe, detector_anchors, uses_softmax
from vision_core.app.task import BackboneSpec, Task
from vision_core.backend import tf
from vision_core.errors import AppError, ConfigError
from vision_core.logs import get_logger

GALLERY_IMAGES = 16  # validation images drawn by ``plots`` (a 4 x 4 grid)
DRAWN_MIN_SCORE = 0.3  # drawn detections score at least this (or the post-process threshold, if higher)
log = get_logger()


def postprocess_config(config: DetectConfig, num_classes: int):
    """The ``TFLite_Detection_PostProcess`` settings of ``config`` for ``num_classes`` classes."""
    from vision_core.detection.nms import PostProcessConfig

    return PostProcessConfig(
        num_classes=num_classes,
        max_detections=config.postprocess.max_detections,
        score_threshold=config.postprocess.score_threshold,
        iou_threshold=config.postprocess.iou_threshold,
    )


class DetectTask(Task):
    name = "detect"
    description = (
        "Object detection: SSD, SSDLite and RetinaNet (FPN or RCNet neck) on any registered backbone, "
        "from COCO / VOC / YOLO data (or the built-in demo shapes) to int8 TFLite with the "
        "TFLite_Detection_PostProcess op, ONNX and TF Serving SavedModels."
    )
    presets = PRESETS
    headline_metric = "mAP50"
    headline_mode = "max"
    export_formats = ("float32", "int8", "saved_model", "onnx")
    tflite_options = {"output_dtype": "float32", "allow_custom_ops": True}  # the post-process op is float
    # after NMS two int8 kernels keep different boxes where scores tie: forms.json compares them by mAP instead
    int8_onnx_min_cosine = None
    # the same for float ONNX on a barely trained model: near-tied candidates swap places, their scores do not
    float_onnx_outputs = ("scores", "num_detections")

    def __init__(self):
        self._splits: dict[tuple, Any] = {}

    # data -----------------------------------------------------------------------------------------------------
    def splits(self, config: DetectConfig):
        """``(train, val)`` :class:`DetectionDataset` of the config (the demo dataset when ``data`` is empty)."""
        train, val = self._read_splits(config)
        if val is None:
            raise ConfigError(
                f"--data {config.dataset.data} is one annotation file: give the validation "
                "split with --val (and --val-images if its images live elsewhere)"
            )
        return train, val

    def _read_splits(self, config: DetectConfig):
        """``(train, val)`` as :meth:`splits`, read once per dataset setting; ``val`` is None when ``data`` is
        one COCO annotation file and ``val`` is not given (``data check`` checks that file alone)."""
        from vision_core.data.detection import (
            load_detection_dataset,
            write_demo_dataset,
        )

        settings = config.dataset
        key = (
            settings.data,
            settings.images,
            settings.val,
            settings.val_images,
            settings.class_names,
            settings.demo_dir,
            settings.demo_train,
            settings.demo_val,
            settings.demo_min_size,
            settings.demo_min_visible,
        )
        if key in self._splits:
            return self._splits[key]
        names = list(settings.class_names) or None
        try:
            if settings.data is None:
                root = write_demo_dataset(
                    settings.demo_dir,
                    train=settings.demo_train,
                    val=settings.demo_val,
                    size=320,
                    min_size=settings.demo_min_size,
                    min_visible=settings.demo_min_visible,
                )["train"].parents[1]
                train = load_detection_dataset(root, split="train")
                val = load_detection_dataset(root, split="val")
            else:
                train = load_detection_dataset(settings.data, settings.images, "train", names)
                one_file = settings.val is None and Path(settings.data).suffix.lower() == ".json"
                val = (
                    None
                    if one_file
                    else load_detection_dataset(settings.val or settings.data, settings.val_images, "val", names)
                )
        except (OSError, ValueError) as error:
            raise AppError(str(error)) from None
        if val is not None and train.class_names != val.class_names:
            raise AppError(f"train classes {list(train.class_names)} differ from val classes {list(val.class_names)}")
        for split in (train, val):
            if split is not None and not len(split):
                raise AppError(f"{split.source}: the {split.split} split has no images")
        self._splits[key] = (train, val)
        return train, val

    def validate(self, config: DetectConfig) -> None:
        """Read both splits (cached for training): a missing file, an unreadable annotation or no ``--val`` for
        one annotation file fails here, before a run folder is made; so does a backbone variant of a backbone
        without variants."""
        self.splits(config)
        self.backbone(config)

    def num_classes(self, config: DetectConfig) -> int:
        return self.splits(config)[0].num_classes

    def class_names(self, config: DetectConfig) -> tuple[str, ...]:
        return self.splits(config)[0].class_names

    def encoder(self, config: DetectConfig):
        from vision_core.detection.boxes import AnchorEncoder

        size = config.model.input_size
        return AnchorEncoder(
            detector_anchors(config.model),
            (size, size),
            self.num_classes(config),
            config.loss.positive_iou,
            config.loss.negative_iou,
        )

    def datasets(self, config: DetectConfig):
        from vision_core.data.detection.augment import train_transform, val_transform
        from vision_core.data.detection.pipeline import make_dataset

        train, val = self.splits(config)
        size, batch = config.model.input_size, config.train.batch_size
        settings = config.dataset
        augment = (
            train_transform(size, crop_probability=settings.crop_probability, seed=config.train.seed)
            if settings.augment
            else val_transform(size)
        )
        encoder = self.encoder(config)
        train_set = make_dataset(
            train,
            augment,
            batch,
            shuffle=True,
            encoder=encoder,
            seed=config.train.seed,
            num_parallel_calls=settings.workers,
        )
        val_set = make_dataset(val, val_transform(size), batch, encoder=encoder, num_parallel_calls=settings.workers)
        # An image that cannot be read is skipped (and counted) mid-epoch; repeating keeps every epoch at the
        # same, known number of batches, which the trainer needs.
        train_set = train_set.repeat().take(math.ceil(len(train) / batch))
        val_set = val_set.repeat().take(math.ceil(len(val) / batch))
        return train_set.map(_keras_targets), val_set.map(_keras_targets)

    def check_data(self, config: DetectConfig) -> dict[str, Any]:
        """Every image and box of both splits (:func:`check_dataset`), by split, and the error count; one
        annotation file given without ``--val`` is checked alone, as the ``train`` split."""
        from vision_core.data.detection import check_dataset

        report: dict[str, Any] = {}
        problems = 0
        train, val = self._read_splits(config)
        if val is None:
            log.info("%s: checked alone; train needs the validation split too (--val)", train.source)
        for dataset in (train, val) if val is not None else (train,):
            checked = check_dataset(dataset, workers=config.dataset.workers)
            log.info("%s\n", checked.table())
            report[dataset.split] = checked.to_dict()
            problems += sum(issue.count for issue in checked.errors)
        report["problems"] = problems
        return report

    # model ----------------------------------------------------------------------------------------------------
    def build_model(self, config: DetectConfig):
        return build_detector(self.num_classes(config), **describe(config.model))

    def backbone(self, config: DetectConfig) -> BackboneSpec:
        """The detector is one flat functional model built on the features model: its variables are the
        detector's, under the same paths."""
        try:
            return BackboneSpec(*backbone_spec(config.model))
        except ValueError as error:
            raise AppError(str(error)) from None

    def compile_args(self, config: DetectConfig) -> dict[str, Any]:
        num_classes, loss = self.num_classes(config), config.loss
        return {
            "loss": {
                "box_encodings": BoxLoss(num_classes, loss.box_weight),
                "class_logits": ClassLoss(
                    uses_softmax(config.model), loss.focal_alpha, loss.focal_gamma, loss.negative_ratio
                ),
            }
        }

    # evaluation and prediction -----------------------------------------------------------------------------
    def runner(self, model, config: DetectConfig):
        """A :class:`DetectorRunner` of ``model``: a Keras detector (raw or with the post-process), a runner, or a
        path of a ``.keras``, ``.tflite`` or ``.onnx`` export."""
        from vision_core.detection.runners import (
            DetectorRunner,
            KerasRunner,
            load_runner,
        )

        if isinstance(model, DetectorRunner):
            return model
        if isinstance(model, (str, Path)):
            return load_runner(model)
        return KerasRunner(self.inference_model(model, config))

    def evaluate(self, model, config: DetectConfig) -> dict[str, float]:
        from vision_core.detection.evaluate import evaluate

        _, val = self.splits(config)
        return evaluate(self.runner(model, config), val)

    def plots(self, model, config: DetectConfig, metrics: dict, out_dir: Path, suffix: str = "") -> dict[str, Path]:
        """``pr_curve<suffix>.png`` (:func:`plot_pr_curves` of ``metrics``) and ``gallery<suffix>.png`` (the model's
        detections on the first :data:`GALLERY_IMAGES` val images, ground truth in white) in ``out_dir``."""
        from vision_core.detection.evaluate import run_detector
        from vision_core.detection.plots import plot_pr_curves, save_gallery

        out_dir = Path(out_dir)
        written = {"pr_curve": plot_pr_curves(metrics, out_dir / f"pr_curve{suffix}.png")}
        _, val = self.splits(config)
        shown = dataclasses.replace(val, records=val.records[:GALLERY_IMAGES])
        detections = run_detector(self.runner(model, config), shown, progress=False)
        lowest = max(config.postprocess.score_threshold, DRAWN_MIN_SCORE)
        try:
            written["gallery"] = save_gallery(
                shown,
                detections.by_image,
                out_dir / f"gallery{suffix}.png",
                count=GALLERY_IMAGES,
                score_threshold=lowest,
            )
        except ValueError as error:  # no image of the gallery could be read: the curves still stand
            log.warning("gallery not drawn: %s", error)
        return written

    def predict(self, model, sources: list[str], config: DetectConfig, out_dir: Path) -> dict[str, Any]:
        from vision_core.detection.predict import predict

        report = predict(
            self.runner(model, config),
            sources,
            out_dir,
            class_names=self.class_names(config),
            score_threshold=max(config.postprocess.score_threshold, DRAWN_MIN_SCORE),
        )
        return {"json": str(report.json_path), "out_dir": str(out_dir), **report.counts()}

    # shipping (the framework's vision_core.app.ship) -------------------------------------------------------------
    def model_info(self, config: DetectConfig, name: str):
        """The TFLite metadata of an export: labels, ``x / 127.5 - 1`` normalisation, the op's four outputs."""
        from tflite.metadata import ModelInfo

        return ModelInfo(
            "detection", name, list(self.class_names(config)), mean=[127.5], std=[127.5], description=self.description
        )

    def inference(self, config: DetectConfig):
        """Every shipped form ends in ``TFLite_Detection_PostProcess`` (:func:`with_postprocess_op`)."""
        return (
            "apps.detect.task:with_postprocess_op",
            {
                "model_config": describe(config.model),
                "postprocess": dataclasses.asdict(postprocess_config(config, self.num_classes(config))),
            },
        )

    def qat_builder(self, config: DetectConfig):
        return "apps.detect.models:build_detector", {"num_classes": self.num_classes(config), **describe(config.model)}

    def qat_loss(self, config: DetectConfig):
        loss = config.loss
        return "apps.detect.losses:detection_loss", {
            "softmax": uses_softmax(config.model),
            "num_classes": self.num_classes(config),
            "box_weight": loss.box_weight,
            "focal_alpha": loss.focal_alpha,
            "focal_gamma": loss.focal_gamma,
            "negative_ratio": loss.negative_ratio,
        }

    def qat_data(self, config: DetectConfig, count: int) -> dict[str, np.ndarray]:
        """``count`` training images with their targets, unaugmented (the fine-tune fits the model, not the
        augmentation)."""
        from vision_core.data.detection.augment import val_transform
        from vision_core.data.detection.pipeline import make_dataset

        train, _ = self.splits(config)
        fine_tune = make_dataset(
            train,
            val_transform(config.model.input_size),
            config.qat.fine_tune_batch,
            shuffle=True,
            encoder=self.encoder(config),
            seed=config.train.seed,
        )
        images, boxes, classes = [], [], []
        for image, targets in fine_tune.map(_keras_targets).unbatch().take(count):
            images.append(image.numpy())
            boxes.append(targets["box_encodings"].numpy())
            classes.append(targets["class_logits"].numpy())
        return {
            "train_x": np.stack(images),
            "target.box_encodings": np.stack(boxes),
            "target.class_logits": np.stack(classes),
        }


def with_postprocess_op(model, *, model_config: dict, postprocess: dict):
    """A raw detector (outputs ``box_encodings``, ``class_scores``) followed by the post-process op, in either
    Keras flavour: outputs ``boxes`` (ymin, xmin, ymax, xmax normalised), ``classes``, ``scores``,
    ``num_detections``. A model that already ends in them is returned unchanged."""
    from vision_core.detection.export_tail import with_postprocess
    from vision_core.detection.nms import PostProcessConfig

    if "num_detections" in model.output_names:
        return model
    settings = PostProcessConfig(**{**postprocess, "box_scales": tuple(postprocess["box_scales"])})
    return with_postprocess(model, detector_anchors(model_config), settings)


def _keras_targets(images, targets):
    """Encoder targets -> the per-output targets of :mod:`apps.detect.losses`."""
    classes = tf.cast(targets["class_targets"], tf.float32)
    boxes = tf.concat([targets["box_targets"], classes[..., None]], axis=-1)
    return images, {"box_encodings": boxes, "class_logits": classes}
