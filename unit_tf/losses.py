"""UNIT loss terms (paper Eqs. 2-5), each a scalar mean over the replica's batch."""

from __future__ import annotations

import tensorflow as tf


def _per_image(values: tf.Tensor) -> tf.Tensor:
    """Sum over all but the batch axis, then mean over the batch."""
    return tf.reduce_mean(tf.reduce_sum(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1))


def kl_loss(mean: tf.Tensor, reduction: str = "mean") -> tf.Tensor:
    """KL(q(z|x) || N(0, I)) for q = N(mean, I), i.e. ½‖mean‖² up to its normalization.

    "mean": averaged over batch AND latent dimensions (mean of mean²), the normalization the paper's weights
    (KL 0.1, recon 100) were tuned with. "sum": summed over latent dimensions, mean over the batch (the
    official DA code, weight 1e-4).
    """
    squared = tf.square(tf.cast(mean, tf.float32))
    return tf.reduce_mean(squared) if reduction == "mean" else _per_image(squared)


def l1_loss(target: tf.Tensor, output: tf.Tensor) -> tf.Tensor:
    """Negative log-likelihood of a Laplacian decoder up to constants: mean absolute error per pixel."""
    return tf.reduce_mean(tf.abs(tf.cast(target, tf.float32) - tf.cast(output, tf.float32)))


def recon_loss(target: tf.Tensor, output: tf.Tensor, distance: str = "l1") -> tf.Tensor:
    """"l1": `l1_loss`; "sse": squared error summed over each image's pixels (official DA `_compute_ll_loss`)."""
    if distance == "l1":
        return l1_loss(target, output)
    return _per_image(tf.square(tf.cast(target, tf.float32) - tf.cast(output, tf.float32)))


def feature_loss(a: tf.Tensor, b: tf.Tensor, distance: str = "l2") -> tf.Tensor:
    """Distance of two feature maps per image: summed squares ("l2", official) or summed |.| ("l1", paper)."""
    diff = tf.cast(a, tf.float32) - tf.cast(b, tf.float32)
    return _per_image(tf.square(diff) if distance == "l2" else tf.abs(diff))


def classifier_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of the digit classifier, mean over the batch."""
    logits = tf.reshape(tf.cast(logits, tf.float32), [tf.shape(logits)[0], -1])
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits))


def generator_gan_loss(fake_logits: tf.Tensor) -> tf.Tensor:
    """Non-saturating GAN loss -log D(G(z)) on translated images."""
    return tf.reduce_mean(tf.nn.softplus(-tf.cast(fake_logits, tf.float32)))


def discriminator_gan_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Cross-entropy of a real/fake classifier: -log D(x) - log(1 - D(G(z)))."""
    real = tf.reduce_mean(tf.nn.softplus(-tf.cast(real_logits, tf.float32)))
    fake = tf.reduce_mean(tf.nn.softplus(tf.cast(fake_logits, tf.float32)))
    return real + fake


def l2_penalty(variables: list[tf.Variable]) -> tf.Tensor:
    """½ Σ‖w‖², whose gradient wd·w is PyTorch Adam's (coupled) weight decay."""
    return 0.5 * tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in variables])
