"""``python -m apps.classify explain``: where a run's classifier looks, and whether its int8 file looks there too.

Images come from files and folders (``sources``) or ``--count`` evenly spaced images of a dataset
split (``--split``, default val). The methods (:mod:`vision_core.classification.attribution`):
Grad-CAM, integrated gradients and saliency differentiate the Keras model (the run's ``--weights``, or
a ``--model`` ``.keras`` file); occlusion runs on every form, an int8 ``.tflite`` or ``.onnx`` too.
Occlusion is also computed on a second form of the same run and compared (Spearman rank correlation,
top-k overlap): the float Keras model is compared with ``--compare FILE``, by default the run's
``exports/*_int8_qat.tflite`` (else ``exports/*_int8.tflite``) when present; an exported ``--model``
is compared with the run's float Keras model. Outputs (panels, raw maps, ``explanations.json``) are
described in :mod:`vision_core.classification.explain`; they go to ``<run>/explain`` or ``--out``.

A volume run (``model.volume_shape``) explains NIfTI volumes the same way: maps per voxel, Grad-CAM on the
volume network's last feature map, occlusion with a box ``--patch`` pixels wide and ``--depth-patch`` slices
deep (on the int8 file too), and panels of the ``--slices`` slices each map lights most.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from apps.classify.task import MEAN, STD
from vision_core.app import runs
from vision_core.app.task import AppCommand
from vision_core.classification.attribution import GRADIENT_METHODS, METHODS
from vision_core.errors import AppError
from vision_core.logs import get_logger

if TYPE_CHECKING:
    from apps.classify.config import ClassifyConfig
    from apps.classify.task import ClassifyTask

log = get_logger()
HELP = (
    "explain a run's decisions on images (Grad-CAM, integrated gradients, saliency, occlusion): panels, raw maps "
    "and explanations.json in <run>/explain, with the float/int8 agreement of the occlusion maps"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``explain`` (beside ``--run``, ``--weights``, ``--model`` and the config options)."""
    group = parser.add_argument_group("explain")
    group.add_argument(
        "sources",
        nargs="*",
        help="image, DICOM or (volume runs) NIfTI files or folders (default: --count images of --split)",
    )
    group.add_argument(
        "--split",
        choices=["train", "val"],
        default="val",
        help="split explained without sources (default: val)",
    )
    group.add_argument(
        "--count", type=int, default=8, metavar="N", help="images of --split, evenly spaced (default: 8)"
    )
    group.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=None,
        help="default: all four for the Keras model, occlusion for an exported .tflite/.onnx --model",
    )
    group.add_argument(
        "--target-class",
        nargs="+",
        default=None,
        metavar="NAME",
        help="classes to explain on every image (default: the predicted class; multi-label: each class at or "
        "above evaluation.threshold, or 0.5, else the most probable)",
    )
    group.add_argument(
        "--ig-steps", type=int, default=32, metavar="N", help="integrated gradients: trapezoid intervals (default: 32)"
    )
    group.add_argument(
        "--baseline",
        choices=["black", "mean"],
        default="black",
        help="integrated gradients' start (default: black)",
    )
    group.add_argument(
        "--fill",
        choices=["black", "mean"],
        default="mean",
        help="occlusion: what the patch is filled with (default: mean, the normalisation's mid-grey)",
    )
    group.add_argument(
        "--patch",
        type=int,
        default=None,
        metavar="PIXELS",
        help="occlusion patch side in pixels (default: input / 6; larger: fewer model runs)",
    )
    group.add_argument(
        "--depth-patch",
        type=int,
        default=None,
        metavar="SLICES",
        help="volumes: occlusion box depth in slices (default: slices / 4; a 16x64x64 volume then takes ~1000 model "
        "runs per form)",
    )
    group.add_argument(
        "--depth-stride",
        type=int,
        default=None,
        metavar="SLICES",
        help="volumes: occlusion stride across slices (default: depth patch / 2)",
    )
    group.add_argument(
        "--slices",
        type=int,
        default=4,
        metavar="N",
        help="volumes: slices drawn per class in a panel, those the maps light most (default: 4)",
    )
    group.add_argument(
        "--stride", type=int, default=None, metavar="PIXELS", help="occlusion stride in pixels (default: patch / 2)"
    )
    group.add_argument(
        "--layer",
        default=None,
        metavar="NAME",
        help="Grad-CAM layer name (default: the last 4-D feature map; volumes: the last one before pooling)",
    )
    group.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="FILE",
        help="second form whose occlusion maps are compared (default: the run's exports/*_int8_qat.tflite, else "
        "*_int8.tflite; for an exported --model, the run's float Keras model)",
    )
    group.add_argument("--no-compare", action="store_true", help="skip the comparison (default: compare)")
    group.add_argument(
        "--top-fraction",
        type=float,
        default=0.1,
        metavar="FRACTION",
        help="top-k overlap: share of highest pixels (default: 0.1)",
    )
    group.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default: <run>/explain)")


def default_int8_file(run_dir: Path) -> Path | None:
    """The run's shipped int8 TFLite file: ``exports/*_int8_qat.tflite``, else ``exports/*_int8.tflite``, else None."""
    for pattern in ("*_int8_qat.tflite", "*_int8.tflite"):
        found = sorted((run_dir / "exports").glob(pattern))
        if found:
            return found[0]
    return None


def _items(task: ClassifyTask, args: argparse.Namespace, config: ClassifyConfig) -> tuple[list, dict[str, str]]:
    """``(ExplainItems, {skipped source: reason})`` of the sources, or of ``--count`` images of ``--split``."""
    from vision_core.classification.explain import ExplainItem

    volume_shape = task.volume_shape(config)
    if args.sources:
        if volume_shape is None:
            from vision_core.classification.predict import collect_images

            files, skipped = collect_images(args.sources)
        else:
            from vision_core.classification.predict_volumes import collect_volumes

            files, skipped = collect_volumes(args.sources)
        labels = [None] * len(files)
    else:
        if args.count < 1:
            raise AppError(f"--count {args.count}: must be at least 1")
        split = task.splits(config)[0 if args.split == "train" else 1]
        chosen = np.unique(np.linspace(0, len(split) - 1, min(args.count, len(split))).round().astype(int))
        files, skipped = [split.paths[i] for i in chosen], {}
        labels = [split.labels[i] for i in chosen]
    if volume_shape is None:
        read = _image_reader(task, config)
    else:
        from vision_core.data.classification.nifti import normalised_volume

        read = functools.partial(normalised_volume, volume_shape=volume_shape, mean=MEAN, std=STD)
    items = []
    for path, label in zip(files, labels):
        try:
            image = read(path)
        except OSError as error:
            skipped[str(path)] = str(error).splitlines()[0]
            log.warning("skipping %s: %s", path, skipped[str(path)])
            continue
        items.append(ExplainItem(_stem(path), str(path), image, label))
    if not items:
        raise AppError(
            f"no readable {'image' if volume_shape is None else 'volume'} among {args.sources or args.split}"
        )
    return items, skipped


def _stem(path) -> str:
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(path).stem


def _image_reader(task: ClassifyTask, config: ClassifyConfig):
    """``path -> normalised image [H, W, C]`` as the input pipeline reads it; OSError for an unreadable file."""
    from vision_core.backend import tf
    from vision_core.data.classification.pipeline import preprocess_image_file

    size, channels, window = config.model.input_size, config.model.channels, task.window(config)
    preprocess = tf.function(  # a graph, as the input pipeline runs it (the DICOM reader takes the path as bytes)
        lambda path: preprocess_image_file(path, size, channels, MEAN, STD, window),
        input_signature=[tf.TensorSpec((), tf.string)],
    )

    def read(path) -> np.ndarray:
        try:
            return preprocess(tf.constant(str(path))).numpy()
        except tf.errors.OpError as error:
            raise OSError(error.message) from None

    return read


def run_explain(
    task: ClassifyTask, args: argparse.Namespace, run_dir: Path, config: ClassifyConfig, model
) -> dict[str, Any]:
    """The ``explain`` command (see the module docstring); returns the counts and the file written."""
    from vision_core.classification.explain import ExplainSettings, explain_images, probability_function

    class_names = task.class_names(config)
    multi_label = config.model.head == "sigmoid"
    exported = isinstance(model, Path) and model.suffix.lower() in (".tflite", ".onnx")
    if isinstance(model, Path):
        runner = task.runner(model)
        keras_model = None if exported else runner.model
        probabilities = probability_function(runner, multi_label)
        name = str(model)
    else:
        keras_model, name = model, str(runs.resolve_weights(run_dir, args.weights))
        probabilities = probability_function(task.runner(model), multi_label, logits=True)
    methods = tuple(args.methods or (("occlusion",) if exported else METHODS))
    if exported and set(methods) & set(GRADIENT_METHODS):
        needing = ", ".join(sorted(set(methods) & set(GRADIENT_METHODS)))
        raise AppError(
            f"{model}: {needing} need the Keras model (the run's weights or a .keras file); "
            "an exported file runs occlusion only"
        )
    targets = None
    if args.target_class:
        unknown = [c for c in args.target_class if c not in class_names]
        if unknown:
            raise AppError(f"--target-class {' '.join(unknown)}: not a class of the run ({', '.join(class_names)})")
        targets = [class_names.index(c) for c in args.target_class]
    for flag in ("ig_steps", "patch", "stride", "depth_patch", "depth_stride", "slices"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise AppError(f"--{flag.replace('_', '-')} {value}: must be at least 1")
    if not 0 < args.top_fraction <= 1:
        raise AppError(f"--top-fraction {args.top_fraction}: must be in (0, 1]")
    volume_shape = task.volume_shape(config)
    if volume_shape is None:
        depth, side = 1, config.model.input_size
    else:
        depth, side = volume_shape[0], min(volume_shape[1:])
    patch = args.patch or max(1, side // 6)
    depth_patch = args.depth_patch or max(1, depth // 4)
    settings = ExplainSettings(
        methods=methods,
        steps=args.ig_steps,
        baseline=args.baseline,
        fill=args.fill,
        patch=patch,
        stride=args.stride or max(1, patch // 2),
        layer=args.layer,
        threshold=0.5 if config.evaluation.threshold is None else config.evaluation.threshold,
        top_fraction=args.top_fraction,
        volume=volume_shape is not None,
        depth_patch=depth_patch,
        depth_stride=args.depth_stride or max(1, depth_patch // 2),
        slices=args.slices,
    )
    compare = None if args.no_compare else _compare(task, args, run_dir, config, exported, multi_label)
    items, skipped = _items(task, args, config)
    try:
        content = explain_images(
            items,
            keras_model,
            probabilities,
            class_names,
            args.out or run_dir / "explain",
            settings,
            mean=MEAN,
            std=STD,
            model_name=name,
            targets=targets,
            multi_label=multi_label,
            compare=compare,
        )
    except ValueError as error:
        raise AppError(str(error)) from None
    out = Path(args.out or run_dir / "explain")
    return {
        "json": str(out / "explanations.json"),
        "images": len(items),
        "skipped": skipped,
        "compare": content["compare"],
    }


def _compare(task: ClassifyTask, args, run_dir: Path, config: ClassifyConfig, exported: bool, multi_label: bool):
    """``(name, probabilities)`` of the form compared with the explained one, or None (no int8 file to compare)."""
    from vision_core.classification.explain import probability_function

    if args.compare is not None:
        if not args.compare.is_file():
            raise AppError(f"--compare {args.compare}: model file not found")
        return str(args.compare), probability_function(task.runner(args.compare), multi_label)
    if exported:
        weights = runs.resolve_weights(run_dir, args.weights)
        float_model = runs.load_model(task, config, weights)
        log.info("comparing with the float Keras model of %s", weights)
        return "float keras", probability_function(task.runner(float_model), multi_label, logits=True)
    found = default_int8_file(run_dir)
    if found is None:
        log.info("%s: no exports/*int8*.tflite; float/int8 agreement not measured (export first or --compare)", run_dir)
        return None
    return str(found), probability_function(task.runner(found), multi_label)


def explain_command(task: ClassifyTask) -> AppCommand:
    """The ``explain`` command of ``task`` (:meth:`ClassifyTask.commands`)."""
    return AppCommand(HELP, functools.partial(run_explain, task), add_arguments)
