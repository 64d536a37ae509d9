"""The optimizers: Adam (TensorFlow's fused update kernel where fast paths run), wrapped for loss scaling and
skipped steps."""

from __future__ import annotations

import keras

from unit_tf import fast
from unit_tf.config import OptimizerConfig
from unit_tf.fast.adam import FusedAdam


def make_optimizer(cfg: OptimizerConfig, name: str, precision: str = "float32",
                   fast_paths: str = "auto") -> keras.optimizers.Optimizer:
    """Adam with the config's settings, inside a LossScaleOptimizer that skips non-finite updates.

    `FusedAdam` where `fast_paths` (`model.fast_paths`) enables the fast paths, else `keras.optimizers.Adam`:
    the same update with the same hyperparameters and slot variables, so checkpoints hold the same names.

    Decoupled weight decay only when asked for (else L2 in the loss). In float32 and bfloat16 the loss scale
    starts at 1 and never grows, so it changes nothing but this: a step whose gradients are not finite is not
    applied (weights, moments and step count untouched) — what lets `train.on_nan=skip-step` skip, and `stop`
    keep the weights of the last good step. In float16 it is Keras' dynamic loss scaling (start 2^15, halve on
    overflow and skip that step, double after 2000 good steps): fp16 gradients would underflow unscaled.
    """
    decoupled = cfg.weight_decay if cfg.weight_decay_mode == "decoupled" and cfg.weight_decay > 0 else None
    adam_cls = FusedAdam if fast.enabled(fast_paths) else keras.optimizers.Adam
    adam = adam_cls(
        learning_rate=cfg.learning_rate,
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
