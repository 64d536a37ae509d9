"""Unpaired two-domain `tf.data` pipelines: each domain shuffled independently, scaled to [-1, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from unit_tf.catalogue import DIGIT_PAIRS
from unit_tf.data.digits import load_domain, resize_images
from unit_tf.errors import UserError

#: Domain B's shuffle seed is the run's seed plus this prime, so the two domains never share an order
#: (image_domains also mixes a TFDS stream's start step into its seed with it).
DOMAIN_B_SEED_OFFSET = 1_000_003


@dataclass
class DomainData:
    """One split of one domain, decoded and resized once, kept in memory as uint8."""

    name: str
    images: np.ndarray  # uint8, N x size x size x C
    labels: np.ndarray | None  # int64, N; None: unlabelled (a target domain without labelled test images)


def _pair(dataset: str) -> tuple[str, str]:
    if dataset not in DIGIT_PAIRS:
        raise UserError(f"unknown dataset '{dataset}'; choose one of: {', '.join(DIGIT_PAIRS)}")
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
    labels = None if domain.labels is None else np.concatenate([domain.labels, domain.labels])
    return DomainData(domain.name, np.concatenate([domain.images, 255 - domain.images]), labels)


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


def shuffled_positions(n: int, seed: int, start: int = 0) -> tf.data.Dataset:
    """Endless (position, index) int64 pairs from global position `start`: epoch e visits the permutation
    stateless_shuffle(range(n), seed=(seed, e)), so position p holds image perm_{p // n}[p % n].

    A pure function of the seed and the position, however many iterators Keras creates: a resumed run (start =
    steps done x batch size) sees exactly the images an uninterrupted one would, at no cost to get there.
    """
    order = tf.range(n, dtype=tf.int64)
    seed_t = tf.constant(seed, tf.int64)
    first_epoch, offset = divmod(start, n)

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        skip = tf.where(e == first_epoch, tf.constant(offset, tf.int64), tf.constant(0, tf.int64))
        permutation = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([seed_t, e]))
        return tf.data.Dataset.from_tensor_slices((e * n + order[skip:], permutation[skip:]))

    return tf.data.Dataset.counter(start=first_epoch).flat_map(epoch)


def _domain_batches(images: np.ndarray, batch_size: int, seed: int, start_step: int = 0,
                    labels: np.ndarray | None = None) -> tf.data.Dataset:
    """Endless batches of one domain in model range (with `labels`: (images, labels)): shuffled indices
    (cheap), then one gather per batch; `start_step` skips that many batches (see shuffled_positions)."""
    n = len(images)
    if n < batch_size:
        raise UserError(f"a domain has only {n} training images, fewer than the batch size {batch_size}; "
                        "lower --batch-size")
    table = tf.constant(images)
    indices = shuffled_positions(n, seed, start_step * batch_size).batch(batch_size, drop_remainder=True)
    if labels is None:
        def gather(_: tf.Tensor, idx: tf.Tensor) -> tf.Tensor:
            return to_model_range(tf.gather(table, idx))
    else:
        label_table = tf.constant(labels.astype(np.int32))

        def gather(_: tf.Tensor, idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return to_model_range(tf.gather(table, idx)), tf.gather(label_table, idx)
    return indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE)


def _batch_dict(x_a: tf.Tensor | tuple[tf.Tensor, tf.Tensor], x_b: tf.Tensor) -> dict[str, tf.Tensor]:
    """One training batch as the models read it: {"x_a", "x_b"}, plus "y_a" when domain A carries labels."""
    if isinstance(x_a, tuple):
        return {"x_a": x_a[0], "y_a": x_a[1], "x_b": x_b}
    return {"x_a": x_a, "x_b": x_b}


def unpaired_batches(a: DomainData, b: DomainData, batch_size: int, seed: int, start_step: int = 0,
                     source_labels: bool = False) -> tf.data.Dataset:
    """Endless unpaired batches {"x_a", "x_b"} (+ "y_a") of `batch_size` images per domain (the GLOBAL batch).

    Each domain has its own shuffle seed, so an image of A is never tied to an image of B. The stream is a
    pure function of (seed, step): `start_step` resumes it where a run stopped. With `source_labels` the
    batches carry domain A's labels as "y_a"; domain B's labels never enter a training batch.
    """
    ds_a = _domain_batches(a.images, batch_size, seed, start_step, labels=a.labels if source_labels else None)
    ds_b = _domain_batches(b.images, batch_size, seed + DOMAIN_B_SEED_OFFSET, start_step)
    return tf.data.Dataset.zip(ds_a, ds_b).map(_batch_dict).prefetch(tf.data.AUTOTUNE)


def source_dataset(a: DomainData, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless labelled batches {"x_a", "y_a"} of the source domain (source-only classifier training)."""
    ds = _domain_batches(a.images, batch_size, seed, labels=a.labels)
    return ds.map(lambda x, y: {"x_a": x, "y_a": y}).prefetch(tf.data.AUTOTUNE)


def eval_batches(images: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """The whole split once, in order, in model range."""
    return (
        tf.data.Dataset.from_tensor_slices(images)
        .batch(batch_size)
        .map(to_model_range, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
