"""Unpaired two-domain `tf.data` pipelines: each domain shuffled independently, scaled to [-1, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from unit_tf.catalogue import DIGIT_DOMAINS, DIGIT_PAIRS
from unit_tf.data.digits import load_domain, resize_images
from unit_tf.errors import UserError

DATASETS = tuple(DIGIT_PAIRS)


@dataclass
class DomainData:
    """One split of one domain, decoded and resized once, kept in memory as uint8."""

    name: str
    images: np.ndarray  # uint8, N x size x size x C
    labels: np.ndarray  # int64, N


def dataset_channels(dataset: str) -> tuple[int, int]:
    """Image channels of (domain A, domain B)."""
    return tuple(DIGIT_DOMAINS[d].channels for d in _pair(dataset))  # type: ignore[return-value]


def _pair(dataset: str) -> tuple[str, str]:
    if dataset not in DIGIT_PAIRS:
        raise UserError(f"unknown dataset '{dataset}'; choose one of: {', '.join(DATASETS)}")
    return DIGIT_PAIRS[dataset].domains


def load_pair(dataset: str, split: str, data_dir: str | None, image_size: int) -> tuple[DomainData, DomainData]:
    """Both domains of a data set's split, resized to the model's size."""
    domains = []
    for name in _pair(dataset):
        x, y = load_domain(name, split, data_dir)
        domains.append(DomainData(name, resize_images(x, image_size), y))
    return domains[0], domains[1]


def with_inverted(domain: DomainData) -> DomainData:
    """The domain plus colour-inverted copies of its images (same labels): the paper's MNIST augmentation."""
    return DomainData(domain.name, np.concatenate([domain.images, 255 - domain.images]),
                      np.concatenate([domain.labels, domain.labels]))


def match_channels(images: tf.Tensor, channels: int) -> tf.Tensor:
    """Gray -> RGB by repetition, RGB -> gray by luminance: feed one domain's images to the other's network."""
    have = images.shape[-1]
    if have == channels:
        return images
    if have == 1:
        return tf.repeat(images, channels, axis=-1)
    return tf.image.rgb_to_grayscale(images)


def to_model_range(images: tf.Tensor) -> tf.Tensor:
    """uint8 0..255 -> float32 -1..1 (the generators' tanh range)."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def to_unit_range(images: tf.Tensor) -> tf.Tensor:
    """float -1..1 -> float32 0..1, for saving and for reporting errors in pixel units."""
    return tf.clip_by_value((tf.cast(images, tf.float32) + 1.0) / 2.0, 0.0, 1.0)


def _shuffled_batches(images: np.ndarray, batch_size: int, seed: int, start_step: int = 0,
                      labels: np.ndarray | None = None) -> tf.data.Dataset:
    """Endless batches of one domain: shuffle indices (cheap), gather images (one op per batch).

    Epoch e is the permutation stateless_shuffle(range(n), seed=(seed, e)): a pure function of the seed and
    the position, however many iterators Keras creates. `start_step` skips that many batches of indices
    (not images), so a resumed run sees exactly the batches an uninterrupted run would.
    """
    n = len(images)
    if n < batch_size:
        raise UserError(f"a domain has only {n} training images, fewer than the batch size {batch_size}; "
                        "lower --batch-size")
    table = tf.constant(images)
    order = tf.range(n, dtype=tf.int64)
    indices = (
        tf.data.Dataset.counter()
        .flat_map(lambda epoch: tf.data.Dataset.from_tensor_slices(
            tf.random.experimental.stateless_shuffle(order, seed=tf.stack([tf.cast(seed, tf.int64), epoch]))))
        .batch(batch_size, drop_remainder=True)
        .skip(start_step)
    )
    if labels is None:
        return indices.map(lambda idx: to_model_range(tf.gather(table, idx)), num_parallel_calls=tf.data.AUTOTUNE)
    label_table = tf.constant(labels.astype(np.int32))
    return indices.map(lambda idx: (to_model_range(tf.gather(table, idx)), tf.gather(label_table, idx)),
                       num_parallel_calls=tf.data.AUTOTUNE)


def train_dataset(a: DomainData, b: DomainData, batch_size: int, seed: int, start_step: int = 0,
                  source_labels: bool = False) -> tf.data.Dataset:
    """Endless unpaired batches {"x_a", "x_b"} (+ "y_a") of `batch_size` images per domain (the GLOBAL batch).

    Each domain has its own shuffle seed, so an image of A is never tied to an image of B. The stream is a
    pure function of (seed, step): `start_step` resumes it where a run stopped. With `source_labels` the
    batches carry domain A's labels as "y_a"; domain B's labels never enter a training batch.
    """
    ds_b = _shuffled_batches(b.images, batch_size, seed + 1_000_003, start_step)
    if source_labels:
        ds_a = _shuffled_batches(a.images, batch_size, seed, start_step, labels=a.labels)
        ds = tf.data.Dataset.zip(ds_a, ds_b).map(lambda a_xy, x_b: {"x_a": a_xy[0], "y_a": a_xy[1], "x_b": x_b})
    else:
        ds_a = _shuffled_batches(a.images, batch_size, seed, start_step)
        ds = tf.data.Dataset.zip(ds_a, ds_b).map(lambda x_a, x_b: {"x_a": x_a, "x_b": x_b})
    return ds.prefetch(tf.data.AUTOTUNE)


def source_dataset(a: DomainData, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless labelled batches {"x_a", "y_a"} of the source domain (source-only classifier training)."""
    ds = _shuffled_batches(a.images, batch_size, seed, labels=a.labels)
    return ds.map(lambda x, y: {"x_a": x, "y_a": y}).prefetch(tf.data.AUTOTUNE)


def eval_batches(images: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """The whole split once, in order, in model range."""
    return (
        tf.data.Dataset.from_tensor_slices(images)
        .batch(batch_size)
        .map(to_model_range, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
