"""UNIT loss terms (paper Eqs. 2-5), each a scalar mean over the replica's batch, and the one declaration of
the terms a run reports (its metrics, metrics.csv columns and TensorBoard tags `loss/<name>`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf

from unit_tf.config import LossConfig


def recon_term(loss: LossConfig) -> str:
    """The reconstruction term's name: recon_l1 or recon_sse."""
    return f"recon_{loss.recon_distance}"


def cycle_recon_term(loss: LossConfig) -> str:
    """The cycle-reconstruction term's name: cycle_l1 or cycle_sse."""
    return f"cycle_{loss.recon_distance}"


def has_cycle(loss: LossConfig) -> bool:
    """Whether the cycle stream (x_a -> x_ab -> x_aba) contributes a loss."""
    return loss.cycle and (loss.cycle_kl > 0 or loss.cycle_recon > 0)


class Term(NamedTuple):
    """A reported term: its name (a string, or a function of the loss settings) and whether a run has it."""

    name: str | Callable[[LossConfig], str]
    active: Callable[[LossConfig], bool]


def _always(loss: LossConfig) -> bool:
    return True


#: Every term in report order: the discriminator's and generator's terms, the domain-adaptation terms (labels of
#: source images only; target images unlabelled), then the two weighted totals. `source_batch_accuracy` is no
#: loss: the classifier's accuracy on the step's source batch.
TERMS = (
    Term("d_gan", _always),
    Term("g_gan", _always),
    Term("kl", _always),
    Term(recon_term, lambda loss: loss.recon_stream),
    Term("cycle_kl", has_cycle),
    Term(cycle_recon_term, has_cycle),
    Term("identity", lambda loss: loss.identity > 0),
    Term("edge", lambda loss: loss.edge > 0),
    Term("classifier", lambda loss: loss.classifier > 0),
    Term("classifier_translated", lambda loss: loss.classifier_translated > 0),
    Term("feature", lambda loss: loss.feature > 0),
    Term("semantic", lambda loss: loss.semantic > 0),
    Term("target_entropy", lambda loss: loss.target_entropy > 0),
    Term("target_consistency", lambda loss: loss.target_consistency > 0),
    Term("source_batch_accuracy", lambda loss: loss.classifier > 0),
    Term("d_loss", _always),
    Term("g_loss", _always),
)


def term_names(loss: LossConfig) -> tuple[str, ...]:
    """The names of the terms a run with these loss settings reports, in report order."""
    return tuple(term.name(loss) if callable(term.name) else term.name for term in TERMS if term.active(loss))


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


def edge_loss(target: tf.Tensor, output: tf.Tensor) -> tf.Tensor:
    """Mean |∇target - ∇output| over the horizontal and vertical neighbour differences: an L1 on edges, which
    a blurred or shifted stroke pays for in full where the plain L1 charges only the few pixels it misses."""
    target, output = tf.cast(target, tf.float32), tf.cast(output, tf.float32)

    def diffs(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:  # [N, H-1, W, C] and [N, H, W-1, C]
        return x[:, 1:] - x[:, :-1], x[:, :, 1:] - x[:, :, :-1]

    (ty, tx), (oy, ox) = diffs(target), diffs(output)
    return tf.reduce_mean(tf.abs(ty - oy)) + tf.reduce_mean(tf.abs(tx - ox))


def recon_loss(target: tf.Tensor, output: tf.Tensor, distance: str = "l1") -> tf.Tensor:
    """"l1": `l1_loss`; "sse": squared error summed over each image's pixels (official DA `_compute_ll_loss`)."""
    if distance == "l1":
        return l1_loss(target, output)
    return _per_image(tf.square(tf.cast(target, tf.float32) - tf.cast(output, tf.float32)))


def feature_loss(a: tf.Tensor, b: tf.Tensor, distance: str = "l2") -> tf.Tensor:
    """Distance of two feature maps per image: summed squares ("l2", official) or summed |.| ("l1", paper)."""
    diff = tf.cast(a, tf.float32) - tf.cast(b, tf.float32)
    return _per_image(tf.square(diff) if distance == "l2" else tf.abs(diff))


def _class_rows(logits: tf.Tensor) -> tf.Tensor:
    """Classifier logits as float32 [N, classes]."""
    return tf.reshape(tf.cast(logits, tf.float32), [tf.shape(logits)[0], -1])


def classifier_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of the digit classifier, mean over the batch."""
    logits = _class_rows(logits)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits))


def consistency_loss(reference: tf.Tensor, logits: tf.Tensor, threshold: float) -> tf.Tensor:
    """Cross-entropy of `logits` against the class `reference` (no gradient) predicts, counted only where that
    prediction's probability reaches `threshold`; mean over the whole batch (FixMatch's unlabelled loss)."""
    probabilities = tf.nn.softmax(tf.stop_gradient(_class_rows(reference)))
    labels = tf.argmax(probabilities, -1, output_type=tf.int32)
    mask = tf.cast(tf.reduce_max(probabilities, -1) >= threshold, tf.float32)
    return tf.reduce_mean(mask * tf.nn.sparse_softmax_cross_entropy_with_logits(labels, _class_rows(logits)))


def information_loss(logits: tf.Tensor) -> tf.Tensor:
    """Information maximization on unlabelled images: the mean entropy of each prediction minus the entropy of
    the batch's mean prediction (lowest, -log K, when each image is sure of its class and the classes are used
    equally often)."""
    logits = _class_rows(logits)
    p, log_p = tf.nn.softmax(logits), tf.nn.log_softmax(logits)
    conditional = tf.reduce_mean(-tf.reduce_sum(p * log_p, -1))
    marginal = tf.reduce_mean(p, 0)
    return conditional + tf.reduce_sum(marginal * tf.math.log(marginal + 1e-8))


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
