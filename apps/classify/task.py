"""The classify app as the shared CLI, trainer and shipping see it (:class:`vision_core.app.task.Task`).

Data: ``dataset.data`` (class folders or a CSV, :func:`load_classification_dataset`) or, when
it is empty, the built-in demo of ``dataset.demo`` written on first use: the fundus images
(``dataset.demo_dir/labels.csv``, split by patient), the shapes (``dataset.demo_dir/<size>px``) or the head
volumes (``dataset.demo_dir/labels.csv``). With ``model.volume_shape`` the samples are NIfTI volumes, batched as
``float32 [B, H, W, D]`` (:mod:`vision_core.data.classification.volume_pipeline`) for a volume ResNet, and
every other step (evaluator, QAT, export) is the images'.
Batches are ``(images float32 [B, S, S, C] = (pixels - 127.5) / 127.5, labels int32 [B])``, or
float32 [B, K] multi-hot labels for a multi-label CSV (``model.head: sigmoid``); with mixup,
training batches carry mixed float32 [B, K] targets. Every form of a model (the Keras model of a
run, a ``.keras``, ``.tflite`` or ``.onnx`` export) is scored by the same evaluator
(:func:`clinical_metrics`: top-1, balanced accuracy, F1, ROC AUC with its bootstrap CI,
sensitivity/specificity, calibration, per image and per patient) through a runner that returns
class scores; ROC AUC ranks the checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from apps.classify.config import PRESETS, ClassifyConfig, parse_window
from vision_core.app.task import BackboneSpec, Task
from vision_core.data.synthetic import SHAPE_CLASSES
from vision_core.errors import AppError, NotSupported
from vision_core.logs import get_logger

log = get_logger()
MEAN, STD = 127.5, 127.5  # pixels -> [-1, 1], as the shapes and the detection app


class ClassifyTask(Task):
    name = "classify"
    description = (
        "Image classification on any registered backbone, from class folders or a CSV (or the built-in "
        "shapes) to int8 TFLite with metadata, ONNX and TF Serving SavedModels."
    )
    presets = PRESETS
    headline_metric = "roc_auc"
    headline_mode = "max"

    def __init__(self):
        self._splits: dict[tuple, Any] = {}
        self._val_images: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    # data -----------------------------------------------------------------------------------------------------
    def splits(self, config: ClassifyConfig):
        """``(train, val)`` :class:`ClassificationDataset` of the config (the built-in demo when ``data`` is empty)."""
        from vision_core.data.classification import (
            load_classification_dataset,
            write_shapes_dataset,
        )
        from vision_core.data.classification.fundus import FUNDUS_CLASSES, write_fundus_dataset
        from vision_core.data.classification.types import NIFTI_SUFFIXES, READABLE_SUFFIXES, is_nifti
        from vision_core.data.classification.volumes import VOLUME_CLASSES, write_volume_dataset

        settings = config.dataset
        volumes = config.model.volume_shape is not None
        key = (dataclasses.astuple(settings), config.model.input_size, volumes)
        if key in self._splits:
            return self._splits[key]
        names = list(settings.class_names) or None
        split_options = {
            "val_fraction": settings.val_fraction,
            "split_seed": settings.split_seed,
            "suffixes": NIFTI_SUFFIXES if volumes else READABLE_SUFFIXES,
        }
        if settings.data is None and (settings.demo == "volumes") != volumes:
            raise AppError(
                "the volume demo needs model.volume_shape (D,H,W) and a volume backbone (e.g. --preset volumes_mc3_18)"
                if not volumes
                else f"model.volume_shape is set: the {settings.demo} demo has no volumes (dataset.demo: volumes)"
            )
        try:
            if settings.data is None and settings.demo == "shapes":
                names = list(SHAPE_CLASSES)  # the suite's label order, not the folders' sorted one
                size = config.model.input_size
                data = write_shapes_dataset(
                    Path(settings.demo_dir) / f"{size}px", train=settings.demo_train, val=settings.demo_val, size=size
                )
            elif settings.data is None and settings.demo == "volumes":
                names = list(VOLUME_CLASSES)
                data = write_volume_dataset(settings.demo_dir, settings.demo_patients)
            elif settings.data is None:
                names = list(FUNDUS_CLASSES)
                data = write_fundus_dataset(settings.demo_dir, settings.demo_patients, settings.demo_size)
            else:
                data = settings.data
            train = load_classification_dataset(data, "train", names, **split_options)
            val = load_classification_dataset(
                settings.val or data, "val", names or list(train.class_names), **split_options
            )
        except (OSError, ValueError) as error:
            raise AppError(str(error)) from None
        for split in (train, val):
            if not len(split):
                raise AppError(f"{split.source}: the {split.split} split has no images")
            other = next((path for path in split.paths if is_nifti(path) != volumes), None)
            if other is not None:
                raise AppError(
                    f"{other}: not a NIfTI volume (.nii, .nii.gz), but model.volume_shape is set"
                    if volumes
                    else f"{other}: a NIfTI volume; classify volumes with --volume-shape D,H,W and a volume backbone"
                )
        if train.multi_label and config.model.head != "sigmoid":
            raise AppError(
                f"{train.source}: a multi-label dataset (a labels column) needs the sigmoid head: --head sigmoid"
            )
        self._splits[key] = (train, val)
        return train, val

    def validate(self, config: ClassifyConfig) -> None:
        """Read both splits' file lists (cached): a missing folder or CSV, or a bad row, stops ``train`` before
        its run folder is made. An ensemble is not trained."""
        if config.ensemble.members:
            raise AppError(
                "ensemble.members is set: an ensemble run combines trained runs and is made by "
                "`python -m apps.classify ensemble RUN_A RUN_B`, not trained"
            )
        self.splits(config)

    def class_names(self, config: ClassifyConfig) -> tuple[str, ...]:
        return self.splits(config)[0].class_names

    def window(self, config: ClassifyConfig) -> tuple[float, float] | None:
        """The DICOM window ``(centre, width)`` of ``dataset.window``, or None (each file's own)."""
        return None if config.dataset.window is None else parse_window(config.dataset.window)

    def volume_shape(self, config: ClassifyConfig) -> tuple[int, int, int] | None:
        """``(D, H, W)`` of ``model.volume_shape``, or None for a 2D model."""
        from vision_core.data.classification.nifti import parse_volume_shape

        return None if config.model.volume_shape is None else parse_volume_shape(config.model.volume_shape)

    def _pipeline(self, split, config: ClassifyConfig, batch_size: int, shuffle: bool, augment: bool = False):
        from vision_core.data.classification import make_classification_dataset
        from vision_core.data.classification.volume_pipeline import make_volume_dataset

        if config.model.volume_shape is not None:
            dataset = make_volume_dataset(
                split,
                self.volume_shape(config),
                batch_size,
                shuffle=shuffle,
                augment=augment,
                seed=config.train.seed,
                mean=MEAN,
                std=STD,
            )
            return dataset.repeat().take(math.ceil(len(split) / batch_size))
        dataset = make_classification_dataset(
            split,
            config.model.input_size,
            batch_size,
            shuffle=shuffle,
            augment=augment,
            seed=config.train.seed,
            channels=config.model.channels,
            mean=MEAN,
            std=STD,
            window=self.window(config),
        )
        # an unreadable image is skipped mid-epoch; repeating keeps every epoch at its known number of batches
        return dataset.repeat().take(math.ceil(len(split) / batch_size))

    def datasets(self, config: ClassifyConfig):
        from vision_core.data.classification.mixup import mixup_batches

        train, val = self.splits(config)
        batch = config.train.batch_size
        train_set = self._pipeline(train, config, batch, shuffle=True, augment=config.dataset.augment)
        if config.loss.mixup_alpha > 0:
            train_set = mixup_batches(train_set, config.loss.mixup_alpha, train.num_classes)
        return train_set, self._pipeline(val, config, batch, shuffle=False)

    def representative_data(self, config: ClassifyConfig, batches: int = 8):
        """Training images in a seeded shuffle (class folders list one class after another)."""
        train, _ = self.splits(config)
        for images, _labels in self._pipeline(train, config, config.train.batch_size, shuffle=True).take(batches):
            yield np.asarray(images, np.float32)

    def check_data(self, config: ClassifyConfig) -> dict[str, Any]:
        from vision_core.data.classification import (
            check_classification_dataset,
            check_patient_overlap,
            check_split_overlap,
        )

        train, val = self.splits(config)
        report: dict[str, Any] = {}
        problems = 0
        for dataset in (train, val):
            checked = check_classification_dataset(dataset, config.dataset.min_per_class, config.dataset.workers)
            log.info("%s\n", checked.table())
            report[dataset.split] = checked.to_dict()
            problems += sum(issue.count for issue in checked.errors)
        overlap = check_split_overlap(train, val, config.dataset.workers)
        patients = check_patient_overlap(train, val)
        report["in_both_splits"] = [str(issue) for issue in overlap]
        report["patients_in_both_splits"] = [f"{issue.path}: {issue.message}" for issue in patients]
        report["problems"] = problems + len(overlap) + len(patients)
        return report

    # model ----------------------------------------------------------------------------------------------------
    def model_kwargs(self, config: ClassifyConfig) -> dict[str, Any]:
        import dataclasses

        return {"num_classes": len(self.class_names(config)), **dataclasses.asdict(config.model)}

    def build_model(self, config: ClassifyConfig):
        from apps.classify.models import build_classifier

        if config.ensemble.members:
            from apps.classify.ensemble import build_ensemble

            return build_ensemble(self, config)
        try:
            return build_classifier(**self.model_kwargs(config))
        except (KeyError, ValueError) as error:
            raise AppError(str(error)) from None

    def backbone(self, config: ClassifyConfig) -> BackboneSpec | None:
        """The classifier is ``build_backbone`` with its head: the features model's variables are its own (a
        volume ResNet is no registered backbone: None)."""
        model = config.model
        if model.volume_shape is not None:
            return None
        if model.first_column_only:
            raise AppError(
                "first_column_only builds RevCol cut to one column, not the registered backbone: "
                "backbone_weights, freeze_backbone and backbone_lr_ratio need the full model"
            )
        try:
            options = model.backbone_options()
        except ValueError as error:
            raise AppError(str(error)) from None
        if model.layer_scale_init is not None:
            options["layer_scale_init"] = model.layer_scale_init
        return BackboneSpec(model.backbone, (model.input_size, model.input_size, model.channels), options)

    def compile_args(self, config: ClassifyConfig) -> dict[str, Any]:
        """:class:`ClassificationLoss` of the head and ``loss`` settings; Keras accuracy for a softmax head
        trained on class indices."""
        from vision_core.classification.losses import ClassificationLoss, balanced_class_weights

        train, _ = self.splits(config)
        settings = config.loss
        weights = (
            balanced_class_weights(train.labels, train.num_classes) if settings.class_weights == "balanced" else None
        )
        loss = ClassificationLoss(config.model.head, settings.focal_gamma, settings.label_smoothing, weights)
        plain = config.model.head == "softmax" and settings.mixup_alpha == 0
        return {"loss": loss, "metrics": ["accuracy"] if plain else []}

    # evaluation and prediction -------------------------------------------------------------------------------
    def runner(self, model):
        """A classifier runner of a Keras model or an exported file (``.keras``, ``.tflite``, ``.onnx``)."""
        from vision_core.classification.runners import load_classifier_runner

        try:
            return load_classifier_runner(model, mean=MEAN, std=STD)
        except (OSError, ValueError) as error:
            raise AppError(str(error)) from None

    def val_images(self, config: ClassifyConfig) -> tuple[np.ndarray, np.ndarray]:
        """``(images float32 [N, S, S, C], labels [N] or [N, K])`` of the validation split, read once."""
        from vision_core.data.classification import load_images
        from vision_core.data.classification.volume_pipeline import load_volumes

        _, val = self.splits(config)
        model = config.model
        key = (val.source, len(val), model.input_size, model.channels, config.dataset.window, model.volume_shape)
        if key not in self._val_images and model.volume_shape is not None:
            self._val_images[key] = load_volumes(val, self.volume_shape(config), MEAN, STD)
        if key not in self._val_images:
            self._val_images[key] = load_images(
                val, config.model.input_size, config.model.channels, MEAN, STD, window=self.window(config)
            )
        return self._val_images[key]

    def val_patients(self, config: ClassifyConfig) -> list[str] | None:
        """The patient of each validation image, or None without patient ids (or when an image was unreadable,
        which leaves the images and the ids unaligned: ``data check`` names it)."""
        _, val = self.splits(config)
        if val.patient_ids is None:
            return None
        if len(self.val_images(config)[1]) != len(val):
            log.warning("%s: unreadable val images; patient-level metrics skipped (run data check)", val.source)
            return None
        return val.patient_ids

    def metrics_of_scores(self, scores: np.ndarray, config: ClassifyConfig) -> dict[str, Any]:
        """The clinical evaluator of validation-image ``scores`` [N, K] (settings of ``evaluation``)."""
        from vision_core.classification.evaluate import clinical_metrics

        _, labels = self.val_images(config)
        settings = config.evaluation
        return clinical_metrics(
            scores,
            labels,
            self.class_names(config),
            patient_ids=self.val_patients(config),
            threshold=settings.threshold,
            resamples=settings.bootstrap,
            level=settings.ci_level,
            seed=config.train.seed,
            graded=settings.graded,
            bins=settings.calibration_bins,
        )

    def scores(self, model, config: ClassifyConfig) -> np.ndarray:
        """Class scores ``[N, K]`` of ``model`` on the validation images."""
        images, _ = self.val_images(config)
        return self.runner(model)(images)

    def evaluate(self, model, config: ClassifyConfig) -> dict[str, Any]:
        return self.metrics_of_scores(self.scores(model, config), config)

    def plots(self, model, config: ClassifyConfig, metrics: dict, out_dir: Path, suffix: str = "") -> dict[str, Path]:
        """ROC curves (per image, and per patient dashed), precision-recall curves, the reliability diagram,
        and for a softmax head the confusion matrix (rows: true class, columns: predicted)."""
        from vision_core.classification import plots

        out_dir = Path(out_dir)
        written = {
            "roc": plots.plot_roc_curves(metrics, out_dir / f"roc{suffix}.png"),
            "precision_recall": plots.plot_pr_curves(metrics, out_dir / f"precision_recall{suffix}.png"),
            "calibration": plots.plot_calibration(metrics, out_dir / f"calibration{suffix}.png"),
        }
        if "confusion_matrix" in metrics:
            written["confusion_matrix"] = plots.plot_confusion_matrix(
                metrics["confusion_matrix"], self.class_names(config), out_dir / f"confusion_matrix{suffix}.png"
            )
        return written

    def compare_forms(self, forms, config: ClassifyConfig) -> list[dict[str, Any]]:
        """Rows of each form's scalar metrics (ROC AUC, top-1, ...) with their deltas to the first, and for a
        softmax head the share of validation images whose top-1 class agrees with the first form's (int8 flips,
        which accuracy alone can hide)."""
        from vision_core.app.ship import compare_metrics
        from vision_core.classification.evaluate import top1_agreement

        scores = {name: self.scores(model, config) for name, model in forms.items()}
        reference = next(iter(scores))
        metrics = {name: self.metrics_of_scores(s, config) for name, s in scores.items()}
        rows = compare_metrics(metrics, reference)
        if config.model.head == "softmax":
            for row in rows:
                row["agreement"] = top1_agreement(scores[reference], scores[row["form"]])
        return rows

    def predict(self, model, sources: list[str], config: ClassifyConfig, out_dir: Path) -> dict[str, Any]:
        from vision_core.classification.predict import RESULTS_FILE, predict_images
        from vision_core.classification.predict_volumes import predict_volumes

        if config.model.volume_shape is not None:
            counts = predict_volumes(
                self.runner(model),
                sources,
                out_dir,
                self.class_names(config),
                self.volume_shape(config),
                MEAN,
                STD,
                multi_label=config.model.head == "sigmoid",
                threshold=0.5 if config.evaluation.threshold is None else config.evaluation.threshold,
            )
            return {"json": str(Path(out_dir) / RESULTS_FILE), "out_dir": str(out_dir), **counts}

        counts = predict_images(
            self.runner(model),
            sources,
            out_dir,
            self.class_names(config),
            config.model.input_size,
            MEAN,
            STD,
            config.model.channels,
            multi_label=config.model.head == "sigmoid",
            threshold=0.5 if config.evaluation.threshold is None else config.evaluation.threshold,
            window=self.window(config),
        )
        return {"json": str(Path(out_dir) / RESULTS_FILE), "out_dir": str(out_dir), **counts}

    def commands(self):
        """``explain`` (:mod:`apps.classify.explain`): Grad-CAM, integrated gradients, saliency and occlusion maps,
        and the float/int8 agreement of occlusion; ``ensemble`` (:mod:`apps.classify.ensemble`): several runs as
        one model."""
        from apps.classify.ensemble import ENSEMBLE_COMMAND
        from apps.classify.explain import explain_command

        return {"explain": explain_command(self), "ensemble": ENSEMBLE_COMMAND}

    # shipping (the framework's vision_core.app.ship) -------------------------------------------------------------
    def model_info(self, config: ClassifyConfig, name: str):
        from tflite.metadata import ModelInfo

        return ModelInfo(
            "classification", name, list(self.class_names(config)), mean=[MEAN], std=[STD], description=self.description
        )

    def export(self, model, config: ClassifyConfig, run_dir, formats, saved_models="saved_models"):
        """The framework's export; a vote ensemble has no int16x8 form (see ``ensemble.vote_export_forms``)."""
        if config.ensemble.members and config.ensemble.combine == "vote":
            from apps.classify.ensemble import vote_export_forms

            formats = vote_export_forms(formats)
        return super().export(model, config, run_dir, formats, saved_models)

    def qat_builder(self, config: ClassifyConfig):
        if config.ensemble.members:
            raise NotSupported(
                "qat is not offered for an ensemble run: run qat on each member, or ship the ensemble's "
                "post-training int8 with export --format int8"
            )
        return "apps.classify.models:build_classifier", self.model_kwargs(config)

    def inference(self, config: ClassifyConfig):
        """Every form ships class probabilities named ``probabilities`` (the SavedModel's signatures and ONNX as the
        TFLite files): a softmax or a sigmoid (multi-label) after the logits; an ensemble ends in its own."""
        if config.ensemble.members:
            return None
        if config.model.head == "sigmoid":
            return "apps.classify.models:with_sigmoid", {}
        return "vision_core.export.tflite_export:with_softmax", {}

    def qat_loss(self, config: ClassifyConfig):
        if config.model.head == "sigmoid":
            return "vision_core.classification.losses:sigmoid_cross_entropy_targets", {}
        return "sparse_categorical_crossentropy_from_logits", {}

    def qat_distillation_loss(self, config: ClassifyConfig) -> str:
        """A sigmoid head is distilled label by label (binary KL of the sigmoids), a softmax head by softmax KL."""
        return "distillation_binary_kl_from_logits" if config.model.head == "sigmoid" else "distillation_kl_from_logits"

    def qat_data(self, config: ClassifyConfig, count: int) -> dict[str, np.ndarray]:
        """``count`` training images and their labels (no flips, no mixup) in a seeded shuffle, and the validation
        images (``eval_x``): the job keeps the QAT Keras model's scores on them (``qat/eval_outputs.npz``)."""
        train, _ = self.splits(config)
        images, labels = [], []
        for batch_images, batch_labels in self._pipeline(train, config, config.train.batch_size, shuffle=True):
            images.append(batch_images.numpy())
            labels.append(batch_labels.numpy())
            if sum(len(b) for b in images) >= count:
                break
        return {
            "train_x": np.concatenate(images)[:count],
            "train_y": np.concatenate(labels)[:count],
            "eval_x": self.val_images(config)[0],
        }
