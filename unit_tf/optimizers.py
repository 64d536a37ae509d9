"""The optimizers: Adam (TensorFlow's fused update kernel where fast paths run), wrapped for loss scaling and
skipped steps, and their learning-rate schedules (`optimizer.schedule`)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from unit_tf import fast
from unit_tf.config import OptimizerConfig
from unit_tf.fast.adam import FusedAdam
from unit_tf.layers import PACKAGE


@keras.saving.register_keras_serializable(PACKAGE)
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`rate * gamma ** floor(step / step_size)`: the official UNIT code's StepLR (halve every step_size steps).

    `step` is the optimizer's count of applied updates, so update k + 1 uses the rate of step k; a resumed
    run restores that count with the optimizer and continues the schedule where it stopped.
    """

    def __init__(self, rate: float, step_size: int, gamma: float) -> None:
        self.rate, self.step_size, self.gamma = float(rate), int(step_size), float(gamma)

    def __call__(self, step: Any) -> tf.Tensor:
        drops = tf.math.floordiv(tf.cast(step, tf.int64), self.step_size)
        return self.rate * tf.pow(self.gamma, tf.cast(drops, tf.float32))

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "step_size": self.step_size, "gamma": self.gamma}


@keras.saving.register_keras_serializable(PACKAGE)
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`rate` until step `start`, then linearly down to 0 at step `end` (CycleGAN), 0 after it."""

    def __init__(self, rate: float, start: int, end: int) -> None:
        self.rate, self.start, self.end = float(rate), int(start), int(end)

    def __call__(self, step: Any) -> tf.Tensor:
        left = (self.end - tf.cast(step, tf.float32)) / float(max(self.end - self.start, 1))
        return self.rate * tf.clip_by_value(left, 0.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "start": self.start, "end": self.end}


def learning_rate(cfg: OptimizerConfig, total_steps: int,
                  scale: float = 1.0) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's learning rate (`cfg.learning_rate` times `scale`): a plain float for `constant`, else a
    schedule over `total_steps` (train.steps, where linear_decay reaches 0)."""
    rate = cfg.learning_rate * scale
    if cfg.schedule == "step":
        return StepDecay(rate, cfg.schedule_steps, cfg.schedule_gamma)
    if cfg.schedule == "linear_decay":
        return LinearDecay(rate, round(cfg.decay_start * total_steps), total_steps)
    return rate


def make_optimizer(cfg: OptimizerConfig, name: str, precision: str = "float32",
                   fast_paths: str = "auto", total_steps: int = 1,
                   lr_scale: float = 1.0) -> keras.optimizers.Optimizer:
    """Adam with the config's settings, inside a LossScaleOptimizer that skips non-finite updates.

    `FusedAdam` where `fast_paths` (`model.fast_paths`) enables the fast paths, else `keras.optimizers.Adam`:
    the same update with the same hyperparameters and slot variables, so checkpoints hold the same names.
    The learning rate follows `optimizer.schedule` (see `learning_rate`; `total_steps` is train.steps), times
    `lr_scale` (`optimizer.dis_lr_scale` for the discriminators).

    Decoupled weight decay only when asked for (else L2 in the loss). In float32 and bfloat16 the loss scale
    starts at 1 and never grows, so it changes nothing but this: a step whose gradients are not finite is not
    applied (weights, moments and step count untouched) — what lets `train.on_nan=skip-step` skip, and `stop`
    keep the weights of the last good step. In float16 it is Keras' dynamic loss scaling (start 2^15, halve on
    overflow and skip that step, double after 2000 good steps): fp16 gradients would underflow unscaled.
    """
    decoupled = cfg.weight_decay if cfg.weight_decay_mode == "decoupled" and cfg.weight_decay > 0 else None
    adam_cls = FusedAdam if fast.enabled(fast_paths) else keras.optimizers.Adam
    adam = adam_cls(
        learning_rate=learning_rate(cfg, total_steps, lr_scale),
        beta_1=cfg.beta_1,
        beta_2=cfg.beta_2,
        epsilon=cfg.epsilon,
        weight_decay=decoupled,
        name=f"{name}_adam",
    )
    if precision == "float16":
        return keras.optimizers.LossScaleOptimizer(adam, initial_scale=2.0**15, dynamic_growth_steps=2000,
                                                   name=name)
    return keras.optimizers.LossScaleOptimizer(adam, initial_scale=1.0, dynamic_growth_steps=2**30, name=name)
