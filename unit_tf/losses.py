"""UNIT loss terms (paper Eqs. 2-5), each a scalar mean over the replica's batch."""

from __future__ import annotations

import tensorflow as tf


def kl_loss(mean: tf.Tensor) -> tf.Tensor:
    """KL(q(z|x) || N(0, I)) for q = N(mean, I), i.e. ½‖mean‖² up to its normalization.

    Averaged over batch AND latent dimensions (mean of mean²), the normalization of the official UNIT code
    that the paper's weights (KL 0.1, recon 100) were tuned with.
    """
    return tf.reduce_mean(tf.square(tf.cast(mean, tf.float32)))


def l1_loss(target: tf.Tensor, output: tf.Tensor) -> tf.Tensor:
    """Negative log-likelihood of a Laplacian decoder up to constants: mean absolute error per pixel."""
    return tf.reduce_mean(tf.abs(tf.cast(target, tf.float32) - tf.cast(output, tf.float32)))


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
