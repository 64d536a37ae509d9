"""Keras' batch norm computed by TensorFlow's fused kernel (a fast path, see unit_tf.fast)."""

from __future__ import annotations

import keras
import tensorflow as tf

# = unit_tf.layers.PACKAGE: the registered name stays "unit_tf>FusedBatchNormalization", as saved files name it.
PACKAGE = "unit_tf"


@keras.saving.register_keras_serializable(PACKAGE)
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras BatchNormalization (same variables, same updates) computed by TF's fused kernel where it can be.

    Keras 3 normalizes with a chain of element-wise ops in float32 (a cast, the moments, the affine map and, in
    training, their gradients): about fifteen passes over every activation per step. TF's FusedBatchNormV3 does
    the same in one pass forward and one backward, in the activations' own dtype (statistics in float32).
    Used for NHWC inputs, except when the statistics must be synchronized over several replicas
    (`synchronized=True` under a multi-replica strategy), where the Keras path all-reduces them.
    """

    def _fused_ok(self, inputs: tf.Tensor, training: bool | None) -> bool:
        if len(inputs.shape) != 4 or self.axis not in (-1, 3) or self.renorm:
            return False
        if training and self.trainable and self.synchronized:
            return tf.distribute.get_strategy().num_replicas_in_sync == 1
        return True

    def call(self, inputs: tf.Tensor, training: bool | None = None, mask: tf.Tensor | None = None) -> tf.Tensor:
        if mask is not None or not self._fused_ok(inputs, training):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, self.compute_dtype)
        channels = x.shape[-1]
        # The digit networks use scale=False: the official BN is affine=False, followed by a bias (beta here).
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels], tf.float32)
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels], tf.float32)
        if not (training and self.trainable):
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=self.moving_mean, variance=self.moving_variance, epsilon=self.epsilon,
                is_training=False)
            return y
        y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=self.epsilon, is_training=True)
        # The kernel returns the Bessel-corrected variance; the Keras layer averages the biased one.
        n = tf.cast(tf.size(x) // channels, tf.float32)
        variance = unbiased * (n - 1.0) / tf.maximum(n, 1.0)
        # Statistics are functions of the batch, not parameters: no gradient flows into the moving averages.
        mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return y
