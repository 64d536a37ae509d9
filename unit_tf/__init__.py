"""unit-tf: UNIT (Liu, Breuel & Kautz, NIPS 2017) in TensorFlow / Keras.

Importing the package turns on TensorFlow's oneDNN kernels on x86 CPUs where TensorFlow would leave them off,
before TensorFlow loads (unit_tf.hardware.use_onednn; $TF_ENABLE_ONEDNN_OPTS=0 keeps TensorFlow's choice).
"""

from unit_tf.hardware import use_onednn

use_onednn()
