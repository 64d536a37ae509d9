"""Keras' Adam with TensorFlow's fused update kernel (a fast path, see unit_tf.fast).

It reads private attributes of Keras' optimizers (`_get_variable_index`, `_momentums`, `_velocities`) and
overrides `update_step(gradient, variable, learning_rate)`; tests/test_fast_paths.py fails with a message
naming the API if a Keras release changes them.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

# = unit_tf.layers.PACKAGE: the registered name stays "unit_tf>FusedAdam", as saved files name it.
PACKAGE = "unit_tf"


@keras.saving.register_keras_serializable(PACKAGE)
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam with each variable's update done by TF's fused ResourceApplyAdam kernel.

    Same update (m, v and the bias-corrected step as keras.optimizers.Adam, to float rounding) and the same slot
    variables, in one pass over the variable and its two moments instead of about ten elementwise ops.
    """

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index].value, self._velocities[index].value
        dtype = variable.dtype

        def cast(x: Any) -> tf.Tensor:
            return tf.cast(x, dtype)

        step = cast(self.iterations + 1)
        # In a distributed update each .handle is the variable's copy on the device being updated.
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.handle, v=v.handle,
            beta1_power=tf.pow(cast(self.beta_1), step), beta2_power=tf.pow(cast(self.beta_2), step),
            lr=cast(learning_rate), beta1=cast(self.beta_1), beta2=cast(self.beta_2), epsilon=cast(self.epsilon),
            grad=cast(gradient), use_locking=False)
