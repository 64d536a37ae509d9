"""Fast paths: exact rewrites of a computation that run faster where they were measured (CPUs), and the ONE
decision whether they run.

- `conv_matmul`: convolutions on maps of a few pixels (or only their kernel gradients) as matmuls, and
  (`winograd`) float32 5x5 convolutions on 8x8 - 16x16 maps by Winograd's minimal filtering;
- `batch_norm.FusedBatchNormalization`: Keras' batch norm computed by TF's fused kernel;
- `adam.FusedAdam`: Keras' Adam with each variable's update done by TF's fused ResourceApplyAdam kernel.

Each computes what the plain Keras layer / op / optimizer computes (to float rounding; Winograd's a few times
the conv's own) with the same variables under the same names, so the setting `model.fast_paths` (`auto` |
`off`) may change between runs on the same checkpoints. `auto` turns them on only when TensorFlow sees no GPU:
they work around CPU (oneDNN) kernels and none has been measured faster on a GPU. Measured timings:
docs/performance.md.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from unit_tf import hardware
from unit_tf.config import FAST_PATHS as SETTINGS  # the values of model.fast_paths


@functools.cache
def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU (checked once per process; initializes TF's devices on first use)."""
    return bool(tf.config.list_logical_devices("GPU"))


def enabled(setting: str) -> bool:
    """Whether the fast paths run under `setting` (`model.fast_paths`): never for "off"; for "auto" only when
    TensorFlow sees no GPU."""
    if setting == "off":
        return False
    if setting == "auto":
        return not gpu_visible()
    raise ValueError(f"fast_paths must be one of {', '.join(SETTINGS)}, got {setting!r}")


def eigen_fp32_without_avx512(dtype: tf.DType) -> bool:
    """fp32_without_avx512, with TensorFlow's own (Eigen) kernels instead of oneDNN's (hardware.onednn_on):
    what runs on such CPUs where $TF_ENABLE_ONEDNN_OPTS=0, and off Linux (e.g. macOS)."""
    return fp32_without_avx512(dtype) and not hardware.onednn_on()


def fp32_without_avx512(dtype: tf.DType) -> bool:
    """Whether the float32 forms measured faster only on CPUs without AVX-512 apply: float32 math on such a CPU
    (hardware.avx512, $UNIT_AVX512)."""
    return dtype == tf.float32 and not hardware.avx512()
