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


Logits = tf.Tensor | list[tf.Tensor]  # one discriminator's logits, or one tensor per scale (multi-scale D)


def _per_scale(logits: Logits) -> list[tf.Tensor]:
    return [tf.cast(x, tf.float32) for x in (logits if isinstance(logits, list | tuple) else [logits])]


def _is_real(logits: tf.Tensor, real: bool, gan_type: str) -> tf.Tensor:
    """Mean loss of logits (a patch of them per image) labelled real or fake: cross-entropy or least squares."""
    if gan_type == "lsgan":
        return tf.reduce_mean(tf.square(logits - (1.0 if real else 0.0)))
    return tf.reduce_mean(tf.nn.softplus(-logits if real else logits))


def generator_gan_loss(fake_logits: Logits, gan_type: str = "bce") -> tf.Tensor:
    """Non-saturating GAN loss -log D(G(z)) ("bce", the paper) or (D(G(z)) - 1)^2 ("lsgan"); summed over
    the discriminator's scales, each a mean over its logits."""
    return tf.add_n([_is_real(x, True, gan_type) for x in _per_scale(fake_logits)])


def discriminator_gan_loss(real_logits: Logits, fake_logits: Logits, gan_type: str = "bce") -> tf.Tensor:
    """Real/fake loss of D: -log D(x) - log(1 - D(G(z))) ("bce") or (D(x) - 1)^2 + D(G(z))^2 ("lsgan"),
    summed over scales."""
    real, fake = _per_scale(real_logits), _per_scale(fake_logits)
    return tf.add_n([_is_real(r, True, gan_type) + _is_real(f, False, gan_type) for r, f in zip(real, fake,
                                                                                            strict=True)])


def l2_penalty(variables: list[tf.Variable]) -> tf.Tensor:
    """½ Σ‖w‖², whose gradient wd·w is PyTorch Adam's (coupled) weight decay."""
    return 0.5 * tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in variables])
