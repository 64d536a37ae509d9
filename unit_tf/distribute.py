"""Choosing the tf.distribute strategy (one device, all local devices, or several workers from TF_CONFIG),
and what multi-worker training needs around it: who is the chief, agreed stop decisions, Keras workarounds."""

from __future__ import annotations

import json
import os
from typing import Any

import keras
import tensorflow as tf

from unit_tf.config import STRATEGIES
from unit_tf.errors import UserError


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


def cluster_from_env() -> dict[str, Any] | None:
    """TF_CONFIG's {"cluster": ..., "task": ...}, checked; None when TF_CONFIG is unset or names one task."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
               '"index": 0}}')
    try:
        spec = json.loads(raw)
        cluster, task = spec["cluster"], spec["task"]
        tasks = {job: list(cluster[job]) for job in ("chief", "worker") if job in cluster}
        index = int(task["index"])
        if task["type"] not in tasks or not 0 <= index < len(tasks[task["type"]]):
            raise ValueError(task)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"TF_CONFIG is not a valid cluster description; set it like {example} (task.type "
                        "'chief' or 'worker', task.index its position in that list)") from None
    return spec if sum(len(v) for v in tasks.values()) > 1 else None


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`auto`: several workers when TF_CONFIG names a cluster, else mirrored over all GPUs if there are
    several, else one device (GPU 0 or the CPU).

    `mirrored`: all GPUs, or all logical CPU devices when there is no GPU. `multi_worker`:
    MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (every worker runs the same command).
    Create the strategy before any other TensorFlow operation runs.
    """
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy '{name}'; choose one of: {', '.join(STRATEGIES)}")
    cluster = cluster_from_env()
    if name == "multi_worker" and cluster is None:
        raise UserError("--strategy multi_worker needs TF_CONFIG naming at least two tasks (docs/"
                        "distributed.md); use --strategy mirrored on one machine")
    if name == "multi_worker" or (name == "auto" and cluster is not None):
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as err:
            raise UserError(f"could not start multi-worker training ({str(err).splitlines()[0]}); create the "
                            "strategy first: run train.py with TF_CONFIG set, before anything else uses "
                            "TensorFlow") from None
        except tf.errors.UnknownError as err:  # "Could not start gRPC server": the address is taken
            task = cluster["task"]
            address = cluster["cluster"][task["type"]][int(task["index"])]
            raise UserError(f"could not start this worker's server at {address} (TF_CONFIG task {task['type']} "
                            f"{task['index']}: {err.message.splitlines()[0]}); the port is in use or not "
                            "this machine's: stop what holds it, or give every worker free ports in "
                            "TF_CONFIG") from None
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = [d.name for d in (gpus or cpus)]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.OneDeviceStrategy((gpus or cpus)[0].name)


def check_batch_size(batch_size: int, strategy: tf.distribute.Strategy) -> None:
    """The global batch splits evenly over the replicas (each gets batch_size / replicas images per domain)."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UserError(f"--batch-size {batch_size} is not divisible by the {replicas} replicas; use a multiple "
                        f"of {replicas}")


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """How many worker processes train together (1 for one-process strategies)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return max(1, sum(len(spec.get(job, [])) for job in ("chief", "worker")))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The worker that writes the run directory and the export: task `chief`, else worker 0."""
    if worker_count(strategy) == 1:
        return True
    resolver = strategy.cluster_resolver
    if "chief" in resolver.cluster_spec().as_dict():
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def any_worker(strategy: tf.distribute.Strategy, flags: list[bool]) -> list[bool]:
    """For each flag, whether any worker raised it. A collective: every worker calls it at the same step, so
    all of them take the same decision (a worker that stopped alone would leave the others waiting)."""
    if worker_count(strategy) == 1:
        return list(flags)
    local = tf.constant([1.0 if f else 0.0 for f in flags])
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(local)), axis=None)
    return [bool(v > 0) for v in total.numpy()]


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Wait until every worker got here (e.g. the chief has prepared the run directory)."""
    any_worker(strategy, [False])


class MultiWorkerFit:
    """Mixin for the fit-trained models: works around two Keras 3 bugs of `model.fit` under
    MultiWorkerMirroredStrategy (keras-team/keras#20585, #20329). Keras reduces a whole dict input batch
    across workers to build the model symbolically (it fails on dicts; our models are built and compiled
    before fit), and reduces each train_step output with `strategy.reduce(MEAN, axis=0)`, which needs a
    leading axis (`fit_outputs` gives scalars one; the reduction returns scalars)."""

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        if self.built and self.compiled:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def fit_outputs(values: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """train_step's logs as Keras can reduce them under the current strategy (see MultiWorkerFit)."""
    if worker_count(tf.distribute.get_strategy()) == 1:
        return values
    return {name: keras.ops.reshape(value, [1]) for name, value in values.items()}
