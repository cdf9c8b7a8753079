"""The int8 check every backbone must pass, shared by the tests and the benchmark.

1. ``train_briefly``: a few Adam steps of the 4-class classifier on built-in shapes
   (``train_classifier``: the full recipe, its float weights kept on disk).
2. ``ptq_feature_agreement``: the feature model (same weights) converted to full int8
   (audited) and compared with float, cosine per feature map.
3. ``write_qat_spec``: the spec for :mod:`vision_core.quant.qat_job`, which builds the
   tf_keras twin, checks it, quantizes with TF-MOT and converts to int8.
4. ``agreement_table``: the benchmark's results as a Markdown table, with the target verdict.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tflite.runtime import TFLiteModel
from vision_core.backend import keras
from vision_core.backbones.registry import build_backbone
from vision_core.backbones.shapes_training import fit_shapes_classifier, shapes_setup
from vision_core.data.synthetic import SHAPE_CLASSES, classification_set, normalize
from vision_core.fused_adam import FusedAdam
from vision_core.quant.agreement import output_agreement
from vision_core.quant.convert import convert
from vision_core.quant.qat_job import QATJobSpec
from vision_core.weights import assign_by_path, load_npz, save_npz, weights_by_path

# The target of every backbone classifier: QAT int8 top-1 agreement with float >= 99 %, accuracy within 1 point.
AGREEMENT_TARGET = 0.99
ACCURACY_TOLERANCE = 0.01
COSINE_FLOOR = 0.995  # the table names the feature map whose PTQ cosine falls below this
HELD_OUT_IMAGES = 400  # the held-out shapes the table scores; one flipped image is 0.25 point of agreement
CALIBRATION_IMAGES = 128  # the first training images, which calibrate every int8 form the benchmark measures


def shapes_data(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = classification_set(count, size, seed=seed)
    return normalize(images), labels


def held_out_shapes(size: int, count: int = HELD_OUT_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """The held-out shapes every trained classifier is scored on; a larger ``count`` keeps the
    table's :data:`HELD_OUT_IMAGES` as its first images."""
    return shapes_data(count, size, seed=99)


def calibration_batches(x: np.ndarray, images: int = CALIBRATION_IMAGES, batch_size: int = 16) -> list[np.ndarray]:
    """Post-training int8 calibration: the first ``images`` training images in batches."""
    return [x[i:i + batch_size] for i in range(0, images, batch_size)]


def train_briefly(name: str, size: int, steps: int, batch_size: int = 8, learning_rate: float = 3e-4,
                  seed: int = 7):
    """``(classifier, per-step training losses, train images, labels)`` after ``steps`` Adam steps.

    The first batch is revisited every step so the loss curve shows learning, not batch noise.
    Steps run eagerly: for a handful of steps that is 3x faster than tracing the train
    function of a large graph (measured on EMOv2-5M, 24 s vs 78 s for 6 steps). Adam at
    3e-4: at 1e-3 RevCol-S diverges (loss 2.2 -> 4.7 -> 2.4 in 6 steps), at 1e-4 EMOv2 stays so
    close to its initialisation that its int8 C3 falls to cosine 0.97 (0.9996 at 3e-4).
    The Adam is :class:`~vision_core.fused_adam.FusedAdam`: eagerly, Keras' own spends over
    half of a RevCol-B step in its per-variable updates.
    """
    keras.utils.set_random_seed(seed)
    x, labels = shapes_data(max(96, batch_size), size, seed=seed + 4)
    classifier = build_backbone(name, (size, size, 3), num_classes=len(SHAPE_CLASSES))
    classifier.compile(optimizer=FusedAdam(learning_rate),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       jit_compile=False, run_eagerly=True)
    losses = [float(classifier.train_on_batch(x[:batch_size], labels[:batch_size])) for _ in range(steps)]
    return classifier, losses, x, labels


def float_weights_path(folder: str | os.PathLike, name: str, size: int, images: int, epochs: int,
                       learning_rate: float, seed: int = 7, cycles: int = 1) -> Path:
    """Where :func:`train_classifier` keeps the float weights of one training recipe inside ``folder``
    (after ``cycles`` schedules of ``epochs``: ``3epochs`` for one, ``3epochsx2`` for two)."""
    repeat = f"x{cycles}" if cycles > 1 else ""
    return Path(folder) / f"{name}_{size}px_{images}images_{epochs}epochs{repeat}_lr{learning_rate:g}_seed{seed}.npz"


def cycle_weights_paths(folder: str | os.PathLike, name: str, size: int, images: int, epochs: int,
                        learning_rate: float, cycles: int, seed: int = 7) -> list[Path]:
    """:func:`float_weights_path` of each cycle 1..``cycles`` of one recipe."""
    return [float_weights_path(folder, name, size, images, epochs, learning_rate, seed, cycle)
            for cycle in range(1, cycles + 1)]


def float_training_state_path(weights_file: str | os.PathLike) -> Path:
    """The per-epoch training state :func:`train_classifier` keeps beside ``weights_file`` until it is written."""
    return Path(weights_file).with_suffix(".state.npz")


def train_classifier(name: str, size: int, images: int, epochs: int, learning_rate: float,
                     float_weights: str | os.PathLike, seed: int = 7, verbose: int = 0, cycles: int = 1):
    """``(classifier, train images, labels)`` after ``cycles`` runs of ``epochs`` on ``images`` built-in
    shapes (:func:`~vision_core.backbones.shapes_training.fit_shapes_classifier`; a later cycle starts
    from the weights of the one before, with a fresh optimizer and warm-up, and skips the recipe's
    warm start).

    Each cycle's weights are kept in the folder ``float_weights`` (:func:`float_weights_path`); the
    latest cycle found is loaded and only the cycles after it train, each checkpointing every epoch to
    :func:`float_training_state_path` beside its file (a killed run resumes from there) and writing
    its weights atomically.
    ``verbose`` as in Keras ``fit`` (2: one line per epoch).
    """
    keras.utils.set_random_seed(seed)
    x, labels = shapes_data(images, size, seed=seed + 4)
    build_options, warm_start = shapes_setup(name, (size, size, 3), len(SHAPE_CLASSES))
    classifier = build_backbone(name, (size, size, 3), num_classes=len(SHAPE_CLASSES), **build_options)
    files = cycle_weights_paths(float_weights, name, size, images, epochs, learning_rate, cycles, seed)
    done = max((cycle for cycle, file in enumerate(files, 1) if file.is_file()), default=0)
    if done:
        try:
            assign_by_path(classifier, load_npz(files[done - 1]))
        except ValueError as error:
            raise ValueError(f"{files[done - 1]}: not this backbone's weights ({error}); delete it to train "
                             "again") from None
    for cycle in range(done + 1, cycles + 1):
        state = float_training_state_path(files[cycle - 1])
        fit_shapes_classifier(classifier, x, labels, epochs, learning_rate, checkpoint=state, verbose=verbose,
                              warm_start=warm_start if cycle == 1 else None)
        save_npz(weights_by_path(classifier), files[cycle - 1])
        state.unlink()
    return classifier, x, labels


def ptq_feature_agreement(name: str, size: int, weights: dict, calibration: np.ndarray,
                          probe: np.ndarray) -> tuple[dict[str, float], bytes]:
    """Cosine per feature map between the float features and their full-int8 TFLite conversion."""
    features = build_backbone(name, (size, size, 3))
    assign_by_path(features, weights, strict=False)
    flatbuffer = convert(features, "int8", [calibration[i:i + 8] for i in range(0, len(calibration), 8)])
    reference = {k: np.asarray(v) for k, v in features(probe, training=False).items()}
    return output_agreement(reference, TFLiteModel(flatbuffer)(probe)), flatbuffer


def write_qat_spec(work: Path, classifier, name: str, size: int, x: np.ndarray, labels: np.ndarray,
                   probe: np.ndarray, steps: int, batch_size: int = 8, quantize: bool = True,
                   calibration_images: int = 16, eval_x: np.ndarray | None = None,
                   learning_rate: float = 1e-4, distill: bool = False, freeze_batch_norm: bool = True,
                   calibration_ranges: str = "batch_mean") -> Path:
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
        steps=steps, batch_size=batch_size, learning_rate=learning_rate, quantize=quantize,
        loss="distillation_kl_from_logits" if distill else "sparse_categorical_crossentropy_from_logits",
        freeze_batch_norm=freeze_batch_norm, calibration_ranges=calibration_ranges)
    return spec.write(work, weights_by_path(classifier), data if eval_x is None else {**data, "eval_x": eval_x})


def meets_target(result: dict) -> bool:
    """Whether a ``benchmarks/backbone_int8.py`` result's QAT int8 classifier meets the target."""
    qat = next(form for form in result["forms"] if form["form"] == "qat_int8.tflite")
    return qat["agreement"] >= AGREEMENT_TARGET and round(abs(qat["accuracy_delta"]), 6) <= ACCURACY_TOLERANCE


def agreement_table(results: list[dict]) -> str:
    """``benchmarks/backbone_int8.py`` results as Markdown: top-1 % (agreement with float %) per form,
    the epochs of one training cycle (x cycles when more than one), the QAT int8 file's RMS logit error
    against float ("-" in results older than it), the lowest
    PTQ feature cosine of C2..C5 (named below :data:`COSINE_FLOOR`) and the target verdict."""
    lines = ["| backbone | epochs | float | PTQ int8 | QAT Keras | QAT int8 | QAT int8 logit error | min PTQ cosine "
             "| target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        forms = {form["form"]: form for form in result["forms"]}
        cells = [f"{100 * forms[name]['accuracy']:.2f} ({100 * forms[name]['agreement']:.2f})"
                 for name in ("ptq_int8.tflite", "qat_keras", "qat_int8.tflite")]
        cosines = result["ptq_int8_feature_cosine"]
        lowest = min(cosines, key=cosines.get)
        cosine = f"{cosines[lowest]:.4f}" + (f" ({lowest})" if cosines[lowest] < COSINE_FLOOR else "")
        verdict = "met" if meets_target(result) else "missed"
        error = forms["qat_int8.tflite"].get("logit_rms_error")
        error = "-" if error is None else f"{error:.3f}"
        cycles = result.get("cycles", 1)
        epochs = f"{result['epochs']}" + (f" x {cycles}" if cycles > 1 else "")
        lines.append(f"| {result['backbone']} | {epochs} | {100 * forms['float']['accuracy']:.2f} | "
                     f"{' | '.join(cells)} | {error} | {cosine} | {verdict} |")
    return "\n".join(lines)
