"""The superres app as the shared CLI, trainer and shipping see it (:class:`vision_core.app.task.Task`).

Data: ``dataset.data`` (high-resolution folders, optionally with paired low-resolution folders,
:func:`load_sr_dataset`) or, when it is empty, the built-in demo images written to
``dataset.demo_dir/<size>px`` on first use. Training batches are random patches
``(inputs float32 [B, p, p, C], targets [B, p*s, p*s, C])`` in ``pixels / 255`` (C = 1 for the Y
channel, 3 for RGB); validation batches are whole images, batch 1. Every form of a model (the Keras
model of a run, a ``.keras``, ``.tflite`` or ``.onnx`` export) is scored by the same evaluator
(:func:`evaluate_sr`: PSNR/SSIM on Y, border cropped by the scale, bicubic beside it).

Shipping: every export is :func:`apps.superres.models.shipped_model` — the model at
``model.export_size`` with its output clipped to [0, 1] — so the int8 TFLite file takes uint8
pixels (scale 1/255, zero point 0) and gives uint8 pixels, DEPTH_TO_SPACE included.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from apps.superres.config import PRESETS, SuperResConfig
from vision_core.app.ship import FORMS
from vision_core.app.task import Task
from vision_core.errors import AppError
from vision_core.logs import get_logger

log = get_logger()
MEAN, STD = 0.0, 255.0  # model input = pixels / 255
GALLERY_IMAGES = 4


class SuperResTask(Task):
    name = "superres"
    description = (
        "Image and video super-resolution with ESPCN (x2/x3/x4, Y or RGB), from high-resolution image folders "
        "(or the built-in demo images) to uint8-in/uint8-out int8 TFLite, ONNX and TF Serving SavedModels."
    )
    presets = PRESETS
    headline_metric = "psnr"
    headline_mode = "max"
    # TFLite has no 16x8 DEPTH_TO_SPACE kernel ("Quantization to 16x8-bit not yet supported").
    export_formats = tuple(form for form in FORMS if form != "int16x8")

    def __init__(self):
        self._splits: dict[tuple, Any] = {}

    # data -----------------------------------------------------------------------------------------------------
    def folders(self, config: SuperResConfig) -> dict[str, tuple[str, str | None]]:
        """``{split: (high-resolution folder, low-resolution folder or None)}``, writing the demo images if used."""
        settings = config.dataset
        if settings.data is None:
            from vision_core.data.superres.demo import write_demo_dataset

            root = write_demo_dataset(
                Path(settings.demo_dir) / f"{settings.demo_size}px",
                train=settings.demo_train,
                val=settings.demo_val,
                size=settings.demo_size,
            )
            return {"train": (str(root / "train"), None), "val": (str(root / "val"), None)}
        data = Path(settings.data)
        nested = (data / "train").is_dir()
        train = data / "train" if nested else data
        if settings.val is not None:
            val = Path(settings.val)
        elif (data / "val").is_dir():
            val = data / "val"
        else:
            raise AppError(f"{data}: no val/ folder beside train/; set dataset.val to the validation images")
        return {"train": (str(train), settings.lr_data), "val": (str(val), settings.lr_val)}

    def splits(self, config: SuperResConfig):
        """``(train, val)`` :class:`~vision_core.data.superres.folders.SRDataset` of the config (cached)."""
        from vision_core.data.superres.folders import load_sr_dataset

        settings = config.dataset
        key = (dataclasses.astuple(settings), config.model.scale)
        if key not in self._splits:
            try:
                folders = self.folders(config)
                self._splits[key] = tuple(
                    load_sr_dataset(hr, config.model.scale, lr, split) for split, (hr, lr) in folders.items()
                )
            except (OSError, ValueError) as error:
                raise AppError(str(error)) from None
        return self._splits[key]

    def validate(self, config: SuperResConfig) -> None:
        """List both splits' files (cached): a missing folder or input, or demo images too small for the
        training patch, stop ``train`` before its run folder."""
        settings = config.dataset
        if settings.data is None and settings.demo_size // config.model.scale < settings.patch_size:
            raise AppError(
                f"demo images of {settings.demo_size} px give {settings.demo_size // config.model.scale} px inputs "
                f"at x{config.model.scale}, smaller than the {settings.patch_size} px training patch: raise "
                "--demo-size or lower --patch-size"
            )
        self.splits(config)

    def datasets(self, config: SuperResConfig):
        from vision_core.data.superres.pipeline import make_image_dataset, make_patch_dataset

        train, val = self.splits(config)
        settings = config.dataset
        try:
            train_data = make_patch_dataset(
                train,
                settings.patch_size,
                config.train.batch_size,
                config.model.colour,
                settings.patches_per_image,
                settings.augment,
                settings.patch_candidates,
            )
        except ValueError as error:
            raise AppError(str(error)) from None
        return train_data, make_image_dataset(val, config.model.colour)

    def check_data(self, config: SuperResConfig) -> dict[str, Any]:
        """Decode every image; name unreadable files, missing or mis-sized inputs, and training inputs smaller
        than ``dataset.patch_size``."""
        from vision_core.data.superres.folders import check_sr_folders

        report: dict[str, Any] = {}
        problems = 0
        for split, (hr, lr) in self.folders(config).items():
            patch = config.dataset.patch_size if split == "train" else 0
            checked = check_sr_folders(hr, config.model.scale, lr, patch, split)
            log.info("%s\n", checked.table())
            report[split] = checked.to_dict()
            problems += sum(issue.count for issue in checked.errors)
        report["problems"] = problems
        return report

    def representative_data(self, config: SuperResConfig, batches: int = 8):
        """Model inputs at ``model.export_size``: validation inputs mirrored out (or cropped) to that size."""
        from vision_core.data.superres.pipeline import to_model_pixels

        _, val = self.splits(config)
        height, width = config.model.export_size
        images = []
        for index in range(batches * config.train.batch_size):
            lr, _ = val.pair(index % len(val))
            extra = (max(0, height - lr.shape[0]), max(0, width - lr.shape[1]))
            mirrored = np.pad(lr, ((0, extra[0]), (0, extra[1]), (0, 0)), "symmetric")
            images.append(to_model_pixels(mirrored[:height, :width], config.model.colour))
            if len(images) == config.train.batch_size:
                yield np.stack(images)
                images = []
        if images:
            yield np.stack(images)

    # model ----------------------------------------------------------------------------------------------------
    def model_kwargs(self, config: SuperResConfig) -> dict[str, Any]:
        from vision_core.data.superres.pipeline import channels_of

        model = config.model
        return {
            "scale": model.scale,
            "channels": channels_of(model.colour),
            "features": list(model.features),
            "kernels": list(model.kernels),
            "activation": model.activation,
            "residual": model.residual,
        }

    def build_model(self, config: SuperResConfig):
        from apps.superres.models import build_espcn

        try:
            return build_espcn(**self.model_kwargs(config))
        except ValueError as error:
            raise AppError(str(error)) from None

    def compile_args(self, config: SuperResConfig) -> dict[str, Any]:
        return {"loss": "mse"}

    # evaluation and prediction -------------------------------------------------------------------------------
    def runner(self, model):
        """An :class:`~vision_core.superres.runners.SRRunner` of a Keras model or an exported file."""
        from vision_core.superres.runners import load_sr_runner

        try:
            return load_sr_runner(model)
        except (OSError, ValueError) as error:
            raise AppError(str(error)) from None

    def evaluate(self, model, config: SuperResConfig) -> dict[str, Any]:
        from vision_core.superres.evaluate import evaluate_sr

        _, val = self.splits(config)
        try:
            return evaluate_sr(self.runner(model), val, config.model.colour, progress=False)
        except ValueError as error:
            raise AppError(str(error)) from None

    def plots(self, model, config: SuperResConfig, metrics: dict, out_dir: Path, suffix: str = "") -> dict[str, Path]:
        """The crop gallery (bicubic | model | ground truth) of the first validation images."""
        from vision_core.data.superres.imresize import bicubic_upscale
        from vision_core.superres.evaluate import super_resolve
        from vision_core.superres.plots import plot_gallery, with_luma

        _, val = self.splits(config)
        runner = self.runner(model)
        rows = []
        for index in range(min(GALLERY_IMAGES, len(val))):
            lr, hr = val.pair(index)
            bicubic = bicubic_upscale(lr, val.scale)
            output = super_resolve(runner, lr, config.model.colour)
            rows.append(
                {
                    "bicubic": bicubic,
                    "model": with_luma(output, bicubic) if output.shape[-1] == 1 else output,
                    "truth": hr,
                    "psnr": metrics["per_image_psnr"][index],
                    "bicubic_psnr": metrics["per_image_bicubic_psnr"][index],
                }
            )
        return {"gallery": plot_gallery(rows, Path(out_dir) / f"gallery{suffix}.png")}

    def predict(self, model, sources: list[str], config: SuperResConfig, out_dir: Path) -> dict[str, Any]:
        """Upscale images, folders and videos (:func:`vision_core.superres.predict.predict_sources`)."""
        from vision_core.superres.predict import RESULTS_FILE, predict_sources

        result = predict_sources(self.runner(model), sources, out_dir, config.model.colour)
        return {"json": str(Path(out_dir) / RESULTS_FILE), "out_dir": str(out_dir), **result}

    # shipping (the framework's vision_core.app.ship) -------------------------------------------------------------
    def model_info(self, config: SuperResConfig, name: str):
        from tflite.metadata import ModelInfo

        return ModelInfo("super_resolution", name, [], mean=[MEAN], std=[STD], description=self.description)

    def serving_preprocess(self, config: SuperResConfig, info):
        """``serving_bytes`` decodes RGB and feeds the model what training fed it (the 8-bit BT.601 Y of a Y
        model, :func:`vision_core.data.superres.pipeline.tf_model_pixels`)."""
        from functools import partial

        from vision_core.data.superres.pipeline import tf_model_pixels

        return partial(tf_model_pixels, colour=config.model.colour), 3

    def inference(self, config: SuperResConfig):
        height, width = config.model.export_size
        return "apps.superres.models:shipped_model", {"height": height, "width": width}

    def serving_model(self, model, shipped, config: SuperResConfig):
        """The shipped model at any input size when ``model.serving_any_size``, else ``shipped`` (at
        ``model.export_size``)."""
        if not config.model.serving_any_size:
            return shipped
        from apps.superres.models import shipped_model

        return shipped_model(model, None, None)

    def qat_builder(self, config: SuperResConfig):
        return "apps.superres.models:build_espcn", self.model_kwargs(config)

    def qat_loss(self, config: SuperResConfig):
        return "apps.superres.losses:qat_mse", {}
