"""The int8 check every backbone must pass, shared by the tests and the benchmark.

1. ``train_briefly``: a few Adam steps of the 4-class classifier on built-in shapes (the full
   recipes are the classify app's presets, ``apps/classify/config.py``).
2. ``ptq_feature_agreement``: the feature model (same weights) converted to full int8
   (audited) and compared with float, cosine per feature map.
3. ``write_qat_spec``: the spec for :mod:`vision_core.quant.qat_job`, which builds the
   tf_keras twin, checks it, quantizes with TF-MOT and converts to int8.
4. ``agreement_table``: ``benchmarks/backbone_int8.py``'s results as a Markdown table, with the
   target verdict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tflite.runtime import TFLiteModel
from vision_core.backbones.registry import build_backbone
from vision_core.backend import keras
from vision_core.data.synthetic import SHAPE_CLASSES, classification_set, normalize
from vision_core.quant.agreement import output_agreement
from vision_core.quant.convert import convert
from vision_core.quant.qat_job import QATJobSpec
from vision_core.storage.weights import assign_by_path, weights_by_path
from vision_core.training.fused_adam import FusedAdam

# The target of every backbone classifier: QAT int8 top-1 agreement with float >= 99 %, accuracy within 1 point.
AGREEMENT_TARGET = 0.99
ACCURACY_TOLERANCE = 0.01
COSINE_FLOOR = 0.995  # the table names the feature map whose PTQ cosine falls below this


def shapes_data(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = classification_set(count, size, seed=seed)
    return normalize(images), labels


def train_briefly(name: str, size: int, steps: int, batch_size: int = 8, learning_rate: float = 3e-4, seed: int = 7):
    """``(classifier, per-step training losses, train images, labels)`` after ``steps`` Adam steps.

    The first batch is revisited every step so the loss curve shows learning, not batch noise.
    Steps run eagerly: for a handful of steps that is 3x faster than tracing the train
    function of a large graph (measured on EMOv2-5M, 24 s vs 78 s for 6 steps). Adam at
    3e-4: at 1e-3 RevCol-S diverges (loss 2.2 -> 4.7 -> 2.4 in 6 steps), at 1e-4 EMOv2 stays so
    close to its initialisation that its int8 C3 falls to cosine 0.97 (0.9996 at 3e-4).
    The Adam is :class:`~vision_core.training.fused_adam.FusedAdam`: eagerly, Keras' own spends over
    half of a RevCol-B step in its per-variable updates.
    """
    keras.utils.set_random_seed(seed)
    x, labels = shapes_data(max(96, batch_size), size, seed=seed + 4)
    classifier = build_backbone(name, (size, size, 3), num_classes=len(SHAPE_CLASSES))
    classifier.compile(
        optimizer=FusedAdam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
        run_eagerly=True,
    )
    losses = [float(classifier.train_on_batch(x[:batch_size], labels[:batch_size])) for _ in range(steps)]
    return classifier, losses, x, labels


def ptq_feature_agreement(
    name: str, size: int, weights: dict, calibration: np.ndarray, probe: np.ndarray
) -> tuple[dict[str, float], bytes]:
    """Cosine per feature map between the float features and their full-int8 TFLite conversion."""
    features = build_backbone(name, (size, size, 3))
    assign_by_path(features, weights, strict=False)
    flatbuffer = convert(features, "int8", [calibration[i : i + 8] for i in range(0, len(calibration), 8)])
    reference = {k: np.asarray(v) for k, v in features(probe, training=False).items()}
    return output_agreement(reference, TFLiteModel(flatbuffer)(probe)), flatbuffer


def write_qat_spec(
    work: Path,
    classifier,
    name: str,
    size: int,
    x: np.ndarray,
    labels: np.ndarray,
    probe: np.ndarray,
    steps: int,
    batch_size: int = 8,
    quantize: bool = True,
    calibration_images: int = 16,
    eval_x: np.ndarray | None = None,
    learning_rate: float = 1e-4,
    distill: bool = False,
    freeze_batch_norm: bool = True,
    calibration_ranges: str = "batch_mean",
) -> Path:
    """Write float weights, data and the QAT job spec into ``work``; returns the spec path.

    The first ``calibration_images`` of ``x`` calibrate the activation ranges; ``eval_x``
    (optional) asks for the QAT model's outputs on it. ``quantize=False`` asks the job for
    the tf_keras twin check only (no TF-MOT, no conversion). ``distill``: fine-tune toward the
    float classifier's logits on ``x`` (the job computes them) instead of ``labels``;
    ``freeze_batch_norm=False``: train the batch norms in the fine-tune. ``calibration_ranges``: how
    the activation ranges come from the calibration batches (:func:`vision_core.quant.qat.calibrate_ranges`).
    """
    data = {"calibration": x[:calibration_images], "train_x": x, "train_y": labels, "probe_x": probe}
    spec = QATJobSpec(
        "vision_core.backbones:build_backbone",
        {"name": name, "input_shape": [size, size, 3], "num_classes": len(SHAPE_CLASSES)},
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        quantize=quantize,
        loss="distillation_kl_from_logits" if distill else "sparse_categorical_crossentropy_from_logits",
        freeze_batch_norm=freeze_batch_norm,
        calibration_ranges=calibration_ranges,
    )
    return spec.write(work, weights_by_path(classifier), data if eval_x is None else {**data, "eval_x": eval_x})


def meets_target(result: dict) -> bool:
    """Whether a ``benchmarks/backbone_int8.py`` result's QAT int8 classifier meets the target."""
    qat = next(form for form in result["forms"] if form["form"] == "qat_int8.tflite")
    return qat["agreement"] >= AGREEMENT_TARGET and round(abs(qat["top1_delta"]), 6) <= ACCURACY_TOLERANCE


def agreement_table(results: list[dict]) -> str:
    """``benchmarks/backbone_int8.py`` results as Markdown: top-1 % (agreement with float %) per form,
    the epochs of one training cycle (x cycles when more than one), the QAT int8 file's RMS error of the
    class probabilities against float ("-" in results without it), the lowest
    PTQ feature cosine of C2..C5 (named below :data:`COSINE_FLOOR`) and the target verdict."""
    lines = [
        "| backbone | epochs | float | PTQ int8 | QAT Keras | QAT int8 | QAT int8 probability error | min PTQ cosine "
        "| target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        forms = {form["form"]: form for form in result["forms"]}
        cells = [
            f"{100 * forms[name]['top1']:.2f} ({100 * forms[name]['agreement']:.2f})"
            for name in ("ptq_int8.tflite", "qat_keras", "qat_int8.tflite")
        ]
        cosines = result["ptq_int8_feature_cosine"]
        lowest = min(cosines, key=cosines.get)
        cosine = f"{cosines[lowest]:.4f}" + (f" ({lowest})" if cosines[lowest] < COSINE_FLOOR else "")
        verdict = "met" if meets_target(result) else "missed"
        error = forms["qat_int8.tflite"].get("probability_rms_error")
        error = "-" if error is None else f"{error:.4f}"
        cycles = result.get("cycles", 1)
        epochs = f"{result['epochs']}" + (f" x {cycles}" if cycles > 1 else "")
        lines.append(
            f"| {result['backbone']} | {epochs} | {100 * forms['float']['top1']:.2f} | "
            f"{' | '.join(cells)} | {error} | {cosine} | {verdict} |"
        )
    return "\n".join(lines)
