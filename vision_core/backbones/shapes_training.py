"""The one training recipe for backbone classifiers on the built-in shapes (demo, CLI, benchmarks)."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np

from vision_core.backend import keras
from vision_core.backbones.revcol import first_column_twin
from vision_core.layers.normalization import set_batch_norm_momentum
from vision_core.training_state import load_training_state, save_training_state
from vision_core.weights import assign_by_path, weights_by_path

DEFAULT_EPOCHS = 3
# Backbones the common recipe leaves short. ResNet-50, 3 epochs: 91 % held-out accuracy at a
# peak of 2e-3, 92.5 % at 1e-3, with logit margins so small that int8 noise moves 4-12 % of its
# predictions; 6 epochs at 1e-3: 99.25 % and QAT int8 agreement 99.5 % (benchmarks/backbone_int8.py).
# ResNet-101 needs more still: 6 epochs at 1e-3 leave it at 81.75 % (QAT int8 agreement 87.5 %),
# 10 epochs at 96.00 % (PTQ int8 agreement 99.25 %, QAT int8 99.50 % with the distilled QAT
# fine-tune; 98.75 % with the earlier one: 20 label steps at 1e-5, batch norms training).
# MobileNetV2, 3 epochs at 2e-3: 97.50 %, and its QAT int8 classifier moves 5 of 400 held-out
# predictions (98.75 % agreement); 6 epochs: 98.75 %, PTQ int8 agreement 100 %, QAT int8 99.75 %.
# VoVNet-57, 3 epochs at 2e-3 on a 2-core EPYC: training accuracy 82.9 % in the last epoch, float
# 88.50 %, QAT int8 agreement 98.25 %; its 3 epochs run twice ("cycles", below): float 99.75 %,
# every int8 form agreeing 100 %.
# RevCol-T's four columns do not learn this task from scratch in a CPU budget (benchmarks/README.md: they stay at
# chance or collapse, with or without the official intermediate supervision), while its first
# column alone, with the ConvNeXt layer scales starting at 1.0, learns it in 5-6 epochs at 3e-4.
# So column 0 trains first ("column0_first") and the four columns then train from its weights at
# 1e-4 ("build": initialisation only, the trained weights replace it): float 96.75 %, QAT int8
# 97.00 % (agreement 99.25 %). RevCol-S and -B (8 and 16 columns) follow the same recipe; RevCol-S
# runs its 3 epochs twice ("cycles"): after one cycle its QAT int8 agreement was 98.50 % (RMS logit
# error 0.294), after two 99.75 % (0.233).
REVCOL_RECIPE = {"epochs": 3, "learning_rate": 1e-4, "build": {"layer_scale_init": 1.0},
                 "column0_first": {"epochs": 6, "learning_rate": 3e-4}}
RECIPES = {"resnet50": {"epochs": 6, "learning_rate": 1e-3}, "resnet101": {"epochs": 10, "learning_rate": 1e-3},
           "mobilenet_v2": {"epochs": 6}, "vovnet57": {"cycles": 2},
           "revcol_t": REVCOL_RECIPE, "revcol_s": {**REVCOL_RECIPE, "cycles": 2}, "revcol_b": REVCOL_RECIPE}


def shapes_recipe(backbone: str, default_learning_rate: float, epochs: int | None = None,
                  learning_rate: float | None = None) -> tuple[int, float]:
    """``(epochs, peak learning rate)`` for ``backbone``: ``epochs`` / ``learning_rate`` when given,
    else its ``RECIPES`` entry, else :data:`DEFAULT_EPOCHS` / ``default_learning_rate``."""
    recipe = RECIPES.get(backbone, {})
    return (epochs or recipe.get("epochs", DEFAULT_EPOCHS),
            learning_rate or recipe.get("learning_rate", default_learning_rate))


def shapes_cycles(backbone: str, cycles: int | None = None) -> int:
    """How many times ``backbone``'s recipe runs its schedule, each from the weights of the one before:
    ``cycles`` when given, else its ``RECIPES`` entry's ``"cycles"``, else 1."""
    return cycles or RECIPES.get(backbone, {}).get("cycles", 1)


def shapes_setup(backbone: str, input_shape, num_classes: int) -> tuple[dict, tuple | None]:
    """``(build options, warm start)`` of ``backbone``'s recipe: keyword options for
    :func:`~vision_core.backbones.registry.build_backbone` that only set the initialisation, and
    the ``warm_start`` of :func:`fit_shapes_classifier` (RevCol's first column alone: its builder,
    epochs and peak learning rate) or None."""
    recipe = RECIPES.get(backbone, {})
    options = dict(recipe.get("build", {}))
    first = recipe.get("column0_first")
    if first is None:
        return options, None
    return options, (partial(first_column_twin, backbone, input_shape, num_classes, **options), first["epochs"],
                     first["learning_rate"])


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch, the whole training state and the completed epoch count, atomically, to ``path``."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        save_training_state(self.path, self.model, {"epoch": epoch + 1})


def warmup_cosine(steps: int, learning_rate: float):
    """Linear warm-up from 0 to ``learning_rate`` over the first tenth of ``steps``, then cosine decay to 0."""
    warmup = steps // 10
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=steps - warmup, warmup_target=learning_rate,
                                                  warmup_steps=warmup)


def fit_shapes_classifier(model, x: np.ndarray, labels: np.ndarray, epochs: int, learning_rate: float,
                          batch_size: int = 32, bn_momentum: float = 0.9,
                          validation_data: tuple[np.ndarray, np.ndarray] | None = None, verbose: int = 0,
                          checkpoint: str | os.PathLike | None = None, warm_start: tuple | None = None):
    """Train ``model`` (logits) on ``x``/``labels``; returns the Keras history (of the epochs run here).

    Adam with a linear warm-up to ``learning_rate`` over the first tenth of the steps, then
    cosine decay to 0 (RevCol diverges without the warm-up). Every batch norm trains with
    ``bn_momentum``: the papers' 0.99-0.999 suit 100k-step ImageNet runs, but after a few
    hundred steps their moving statistics still lag the weights (MobileNetV2, 375 steps:
    99 % training accuracy with batch statistics, 30 % with the moving ones at 0.99, 86 % at 0.9).
    Compiled with an accuracy metric and without XLA (7-8x slower on CPU).

    ``checkpoint``: a file that receives the training state after every epoch; when it exists at
    the start, training resumes after its last completed epoch (weights, optimizer step and
    schedule position restored; the data order of the remaining epochs is a fresh shuffle).

    ``warm_start``: ``(build_first, epochs, learning_rate)``: train the model ``build_first()``
    (same recipe, its own schedule) before ``model``, then copy its weights into ``model`` by path.
    It keeps its own checkpoint (``checkpoint``'s suffix replaced by ``.first.npz``, removed when
    ``model`` is trained); a resumed run whose ``model`` checkpoint exists skips it.
    """
    checkpoint = None if checkpoint is None else Path(checkpoint)
    first_checkpoint = None if checkpoint is None else checkpoint.with_suffix(".first.npz")
    if warm_start is not None and not (checkpoint is not None and checkpoint.is_file()):
        build_first, first_epochs, first_learning_rate = warm_start
        first = build_first()
        fit_shapes_classifier(first, x, labels, first_epochs, first_learning_rate, batch_size, bn_momentum,
                              validation_data, verbose, first_checkpoint)
        assign_by_path(model, weights_by_path(first), strict=False)
    set_batch_norm_momentum(model, bn_momentum)
    model.compile(optimizer=keras.optimizers.Adam(warmup_cosine(epochs * (len(x) // batch_size), learning_rate)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                  jit_compile=False)
    callbacks, first_epoch = [], 0
    if checkpoint is not None:
        if checkpoint.is_file():
            model.optimizer.build(model.trainable_variables)
            first_epoch = load_training_state(checkpoint, model)["epoch"]
        callbacks.append(EpochCheckpoint(checkpoint))
    history = model.fit(x, labels, batch_size=batch_size, epochs=epochs, initial_epoch=first_epoch,
                        validation_data=validation_data, callbacks=callbacks, verbose=verbose)
    if warm_start is not None and first_checkpoint is not None:
        first_checkpoint.unlink(missing_ok=True)
    return history
