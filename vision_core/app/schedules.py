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


def build_optimizer(train: TrainConfig, schedule: WarmupDecay) -> keras.optimizers.Optimizer:
    """The Keras optimizer of a :class:`TrainConfig`, with Keras's built-in weight EMA when ``train.ema``."""
    common = {
        "learning_rate": schedule,
        "clipnorm": train.clipnorm,
        "use_ema": train.ema,
        "ema_momentum": train.ema_decay,
    }
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=train.momentum, weight_decay=train.weight_decay or None, **common)
    if train.optimizer == "adam":
        return keras.optimizers.Adam(**common)
    return keras.optimizers.AdamW(weight_decay=train.weight_decay, **common)
