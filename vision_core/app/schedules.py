"""The optimizer of a train config and its learning-rate schedule: linear warm-up, then cosine,
step or constant decay, by optimizer step.

The schedule is a function of the optimizer's step counter, which checkpoints save, so a
resumed run continues at the same point of the schedule.
"""

from __future__ import annotations

import math
from typing import Any

from vision_core.app.config import TrainConfig
from vision_core.backend import keras, tf

ops = keras.ops
DECAYS = ("cosine", "step", "constant")


@keras.saving.register_keras_serializable(package="vision_core")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``lr(step)`` for optimizer steps ``0, 1, ...``.

    Warm-up: ``peak * (step + 1) / warmup_steps`` for ``step < warmup_steps``. After it:

    * ``cosine``: ``peak * (m + (1 - m) * (1 + cos(pi * p)) / 2)`` with progress
      ``p = (step - warmup_steps) / (total_steps - warmup_steps)`` clipped to [0, 1] and
      ``m = min_ratio``;
    * ``step``: ``peak * gamma ** (number of milestones <= step)`` (milestones in steps);
    * ``constant``: ``peak``.

    With ``cycles > 1`` the warm-up and decay run that many times over ``total_steps``, each
    from the start (warm restarts): ``step`` is taken modulo ``total_steps // cycles``.
    """

    def __init__(
        self,
        peak: float,
        total_steps: int,
        warmup_steps: int = 0,
        decay: str = "cosine",
        min_ratio: float = 0.0,
        milestones: tuple[int, ...] = (),
        gamma: float = 0.1,
        cycles: int = 1,
    ) -> None:
        if decay not in DECAYS:
            raise ValueError(f"unknown decay {decay!r}: expected one of {', '.join(DECAYS)}")
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay
        self.min_ratio = float(min_ratio)
        self.milestones = tuple(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.cycles = int(cycles)
        if self.cycles < 1 or self.total_steps % self.cycles:
            raise ValueError(f"{self.cycles} cycles do not divide {self.total_steps} steps")
        self.cycle_steps = self.total_steps // self.cycles

    def _decayed(self, step: tf.Tensor) -> tf.Tensor:
        if self.decay == "cosine":
            span = max(self.cycle_steps - self.warmup_steps, 1)
            progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
            return self.peak * (self.min_ratio + (1.0 - self.min_ratio) * cosine)
        if self.decay == "step":
            passed = sum(ops.cast(step >= m, "float32") for m in self.milestones) if self.milestones else 0.0
            return self.peak * ops.power(self.gamma, passed)
        return self.peak * ops.ones_like(step)

    def __call__(self, step: int | tf.Tensor | keras.Variable) -> tf.Tensor:
        step = ops.cast(step, "float32")
        if self.cycles > 1:
            step = ops.mod(step, float(self.cycle_steps))
        decayed = self._decayed(step)
        if self.warmup_steps <= 0:
            return decayed
        warm = self.peak * (step + 1.0) / self.warmup_steps
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay": self.decay,
            "min_ratio": self.min_ratio,
            "milestones": list(self.milestones),
            "gamma": self.gamma,
            "cycles": self.cycles,
        }


def build_schedule(train: TrainConfig, steps_per_epoch: int) -> WarmupDecay:
    """The schedule of a :class:`TrainConfig`: epochs (warm-up and milestones, within a cycle) turned into steps."""
    if train.epochs % train.cycles:
        raise ValueError(f"train.cycles={train.cycles} does not divide train.epochs={train.epochs}")
    return WarmupDecay(
        peak=train.learning_rate,
        total_steps=train.epochs * steps_per_epoch,
        warmup_steps=round(train.warmup_epochs * steps_per_epoch),
        decay=train.schedule,
        min_ratio=train.min_lr_ratio,
        milestones=tuple(m * steps_per_epoch for m in train.step_milestones),
        gamma=train.step_gamma,
        cycles=train.cycles,
    )


class BackboneLearningRate:
    """Mixin of a Keras optimizer: the backbone's variables step at ``ratio`` times the learning rate.

    Keras 3 has no per-variable learning rate (no parameter groups). The update of SGD (with
    momentum), Adam and AdamW is linear in the learning rate, so passing ``ratio * lr`` to the
    backbone variables' ``update_step`` is exactly a parameter group at that rate; the decoupled
    weight decay step (``var -= var * wd * lr``) is taken there too, at the same rate. Scaling the
    gradients instead would be wrong for Adam, whose update does not depend on their scale.
    Call :meth:`set_backbone` before the first step.
    """

    def set_backbone(self, variables: Any, ratio: float) -> None:
        self._backbone_keys = {self._var_key(v) for v in variables}
        self._backbone_ratio = float(ratio)

    def _in_backbone(self, variable: Any) -> bool:
        return self._var_key(variable) in self._backbone_keys

    def _use_weight_decay(self, variable: Any) -> bool:
        # the backbone's decay is taken in update_step, at its own rate
        return not self._in_backbone(variable) and super()._use_weight_decay(variable)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self._in_backbone(variable):
            learning_rate = ops.cast(learning_rate, variable.dtype) * self._backbone_ratio
            if self.weight_decay is not None and super()._use_weight_decay(variable):
                self.assign_sub(variable, variable * ops.cast(self.weight_decay, variable.dtype) * learning_rate)
        super().update_step(gradient, variable, learning_rate)


class SGD(BackboneLearningRate, keras.optimizers.SGD):
    """Keras SGD with the backbone's learning-rate ratio."""


class Adam(BackboneLearningRate, keras.optimizers.Adam):
    """Keras Adam with the backbone's learning-rate ratio."""


class AdamW(BackboneLearningRate, keras.optimizers.AdamW):
    """Keras AdamW with the backbone's learning-rate ratio."""


def build_optimizer(train: TrainConfig, schedule: WarmupDecay, backbone: Any = ()) -> keras.optimizers.Optimizer:
    """The Keras optimizer of a :class:`TrainConfig`, with Keras's built-in weight EMA when ``train.ema``.

    ``backbone``: the backbone's variables; with ``train.backbone_lr_ratio != 1`` they step at that
    fraction of the learning rate (:class:`BackboneLearningRate`).
    """
    common = {
        "learning_rate": schedule,
        "clipnorm": train.clipnorm,
        "use_ema": train.ema,
        "ema_momentum": train.ema_decay,
    }
    scaled = train.backbone_lr_ratio != 1.0
    if scaled and not backbone:
        raise ValueError("train.backbone_lr_ratio needs the backbone's variables")
    if train.optimizer == "sgd":
        cls = SGD if scaled else keras.optimizers.SGD
        optimizer = cls(momentum=train.momentum, weight_decay=train.weight_decay or None, **common)
    elif train.optimizer == "adam":
        optimizer = (Adam if scaled else keras.optimizers.Adam)(**common)
    else:
        optimizer = (AdamW if scaled else keras.optimizers.AdamW)(weight_decay=train.weight_decay, **common)
    if scaled:
        optimizer.set_backbone(backbone, train.backbone_lr_ratio)
    return optimizer
