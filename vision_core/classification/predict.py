"""Classify image files and folders; write drawn copies and one JSON of the top-k classes.

``predict_images(runner, sources, out_dir, ...)``: each source is an image or DICOM file or a
folder, searched recursively for them (suffixes in :data:`READABLE_SUFFIXES`, sorted by path;
other files are ignored). Model inputs are made exactly as evaluation makes them
(:func:`~vision_core.data.classification.pipeline.preprocess_image_file`: TensorFlow decode, no
EXIF rotation, bilinear resize, ``(pixels - mean) / std``). Into ``out_dir`` go a copy of each image
with its top-1 class and score drawn (``<stem>.jpg``, numbered ``<stem>_2.jpg`` when two share a
stem; drawn upright, EXIF rotation applied) and ``predictions.json``::

    {"class_names": [...], "top_k": k,
     "results": [{"file", "output", "width", "height",
                  "top": [{"index", "label", "score"}, ...]}, ...],   # best first, probabilities
     "skipped": {path: reason}, "counts": {"images", "skipped"}}

Scores are probabilities: rows that are not already (non-negative, summing to 1 within
:data:`PROBABILITY_TOLERANCE`, which int8 outputs need) are taken for logits and softmaxed. A
multi-label model's scores are independent probabilities (a sigmoid of logits outside [0, 1]); each
result then also lists ``positive``: the classes at or above ``threshold``. A file that cannot be
read is logged with its name and reason, counted, and skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from tflite.draw import draw_prediction
from tflite.predict import Prediction
from vision_core.backend import tf
from vision_core.data.classification.dicom import read_dicom
from vision_core.data.classification.pipeline import preprocess_image_file
from vision_core.data.classification.types import READABLE_SUFFIXES, is_dicom
from vision_core.data.detection.images import UnreadableImageError, read_image
from vision_core.logs import get_logger
from vision_core.storage.atomic import write_atomic

log = get_logger()

RESULTS_FILE = "predictions.json"
PROBABILITY_TOLERANCE = 0.05  # uint8 probabilities (scale 1/256) leave a row's sum off 1 by up to K/512


def to_probabilities(scores: np.ndarray) -> np.ndarray:
    """float32 [N, K] probabilities: ``scores`` as they are when every row already is, else their softmax."""
    scores = np.asarray(scores, np.float64)
    if (scores >= 0).all() and np.allclose(scores.sum(axis=1), 1.0, atol=PROBABILITY_TOLERANCE):
        return scores.astype(np.float32)
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def to_class_probabilities(scores: np.ndarray) -> np.ndarray:
    """float32 [N, K] independent class probabilities (multi-label): ``scores`` when all lie in [0, 1], else
    their sigmoid."""
    scores = np.asarray(scores, np.float64)
    if ((scores >= 0) & (scores <= 1)).all():
        return scores.astype(np.float32)
    return (1.0 / (1.0 + np.exp(-scores))).astype(np.float32)


def collect_images(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    suffixes: Collection[str] = READABLE_SUFFIXES,
    kind: str = "an image",
) -> tuple[list[Path], dict[str, str]]:
    """``(files, {path: reason} of unusable sources)``: files as given, folders searched recursively for
    ``suffixes`` (default: images and DICOM files); ``kind`` names them when a file of another suffix is skipped."""
    files, skipped = [], {}
    for source in [sources] if isinstance(sources, (str, os.PathLike)) else sources:
        path = Path(source)
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in suffixes
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif not path.exists():
            skipped[str(path)] = "no such file or folder"
        elif path.suffix.lower() not in suffixes:
            skipped[str(path)] = f"not {kind} (suffix {path.suffix!r})"
        else:
            files.append(path)
    return files, skipped


def _output_name(source: Path, taken: set[str]) -> str:
    """``<stem>.jpg``, numbered ``<stem>_2.jpg`` ... when another source already took the name."""
    name, number = f"{source.stem}.jpg", 1
    while name in taken:
        number += 1
        name = f"{source.stem}_{number}.jpg"
    taken.add(name)
    return name


def predict_images(
    runner,
    sources,
    out_dir: str | os.PathLike,
    class_names: Sequence[str],
    image_size: int | Sequence[int],
    mean: float | Sequence[float],
    std: float | Sequence[float],
    channels: int = 3,
    top_k: int = 3,
    *,
    multi_label: bool = False,
    threshold: float = 0.5,
    window: tuple[float, float] | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    """Classify the images of ``sources`` and write the results to ``out_dir`` (format in the module docstring).

    Args:
        runner: normalised images float32 [N, H, W, C] -> scores [N, K], e.g. from
            :func:`vision_core.classification.runners.load_classifier_runner`.
        sources: an image file or folder, or a list of them.
        class_names: the K class names, in score-column order.
        image_size: the model input side, or ``(height, width)``.
        mean, std: the model's normalisation in pixel units, one value or one per channel.
        channels: 3 (RGB) or 1 (grey), as the model takes.
        top_k: classes listed per image (at most K); the drawn copy shows the first.
        multi_label: the scores are independent class probabilities (sigmoid head); results list ``positive``.
        threshold: multi-label: the probability at which a class is listed as ``positive``.
        window: DICOM ``(centre, width)`` instead of each file's own VOI.
        batch_size: images per runner call.

    Returns:
        ``{"images": classified, "skipped": unusable sources and unreadable files}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, skipped = collect_images(sources)
    for path, reason in skipped.items():
        log.warning("skipping %s: %s", path, reason)
    preprocess = tf.function(
        lambda path: preprocess_image_file(path, image_size, channels, mean, std, window),
        input_signature=[tf.TensorSpec((), tf.string)],
    )
    results, taken = [], {RESULTS_FILE}
    bar = tqdm(total=len(files), desc="predict", unit="image", disable=not progress)
    for start in range(0, len(files), batch_size):
        images, inputs, paths = [], [], []
        for path in files[start : start + batch_size]:
            try:
                image, model_input = _load(path, preprocess, window)
            except OSError as error:  # missing, corrupt or truncated file
                skipped[str(path)] = str(error)
                log.warning("skipping %s", error)
                continue
            images.append(image)
            inputs.append(model_input)
            paths.append(path)
        if paths:
            scores = runner(np.stack(inputs))
            probabilities = to_class_probabilities(scores) if multi_label else to_probabilities(scores)
            if probabilities.shape[1] != len(class_names):
                raise ValueError(
                    f"the model scores {probabilities.shape[1]} classes, class_names has {len(class_names)}"
                )
            for path, image, row in zip(paths, images, probabilities):
                result = _write_result(path, image, row, class_names, top_k, out_dir, taken)
                if multi_label:
                    result["positive"] = [name for name, p in zip(class_names, row) if p >= threshold]
                results.append(result)
        bar.update(len(files[start : start + batch_size]))
    bar.close()
    counts = {"images": len(results), "skipped": len(skipped)}
    content = {
        "class_names": list(class_names),
        "top_k": top_k,
        "results": results,
        "skipped": skipped,
        "counts": counts,
    }
    write_atomic(out_dir / RESULTS_FILE, json.dumps(content, indent=1).encode())
    return counts


def _load(path: Path, preprocess, window: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8 RGB [H, W, 3] to draw on, model input float32 [h, w, C])``; OSError naming the file."""
    if is_dicom(path):  # pydicom first: its errors name the file and the problem
        image = read_dicom(path, window)
        image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    else:
        image = read_image(path)  # OpenCV first: its errors name the file and the problem
    try:
        return image, preprocess(tf.constant(str(path))).numpy()
    except tf.errors.OpError as error:
        raise UnreadableImageError(f"{path}: OpenCV reads it but TensorFlow cannot decode it") from error


def _write_result(
    path: Path,
    image: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    top_k: int,
    out_dir: Path,
    taken: set[str],
) -> dict:
    """Draw the top-1 class on ``image`` (uint8 RGB [H, W, 3]), write it, and return its JSON entry."""
    order = np.argsort(-probabilities, kind="stable")[: max(1, top_k)]
    top = [{"index": int(i), "label": class_names[i], "score": round(float(probabilities[i]), 5)} for i in order]
    name = _output_name(path, taken)
    ok, encoded = cv2.imencode(".jpg", draw_prediction(image, Prediction("classification", top), top_k=1))
    if not ok:
        raise ValueError(f"OpenCV could not encode {name}")
    write_atomic(out_dir / name, encoded.tobytes())
    return {"file": str(path), "output": name, "width": int(image.shape[1]), "height": int(image.shape[0]), "top": top}
