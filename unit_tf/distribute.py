"""Choosing the tf.distribute strategy (one device, or all local devices mirrored)."""

from __future__ import annotations

import tensorflow as tf

from unit_tf.errors import UserError

STRATEGIES = ("auto", "one_device", "mirrored")


def configure_logical_cpus(count: int) -> None:
    """Split the CPU into `count` logical devices (before TF initializes them): replicas without GPUs."""
    if count < 1:
        raise UserError(f"--logical-cpus must be >= 1, got {count}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        raise UserError("--logical-cpus must be set before TensorFlow initializes its devices") from None


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`auto`: mirrored over all GPUs if there are several, else one device (GPU 0 or the CPU).

    `mirrored`: all GPUs, or all logical CPU devices when there is no GPU.
    """
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy '{name}'; choose one of: {', '.join(STRATEGIES)}")
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = [d.name for d in (gpus or cpus)]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.OneDeviceStrategy((gpus or cpus)[0].name)
