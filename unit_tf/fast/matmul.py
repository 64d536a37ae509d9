"""Matmuls in the operand order TF's CPU kernel computes fastest (an exact rewrite: the same products).

With TensorFlow's own (Eigen) kernels, in float32 on CPUs without AVX-512 (where it was measured), TF's
MatMul of a few hundred rows by a large matrix stored transposed, a @ b^T with b [N, K] and N >=
`MIN_ROWS_RATIO` x a's rows, runs 2-4x slower than the same product taken the other way round, (b @ a^T)^T:
the large operand on the left, as stored. That is the input gradient of every dense product (dy @ w^T) and
the forward pass of the generator's first transposed conv. `matmul` takes that order there, also for both
gradients (TF's own MatMul gradient formulas, each product routed through `product`). oneDNN's matmul, which
unit_tf turns on on such CPUs (unit_tf.hardware.use_onednn), reads either order as fast, and there the extra
transposes would only cost time: with oneDNN the order stays as written.
Measured timings: docs/performance.md (fast paths).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from unit_tf.fast import eigen_fp32_without_avx512

#: The product a @ b^T is taken as (b @ a^T)^T when b has at least this many times a's rows.
MIN_ROWS_RATIO = 4


def product(a: tf.Tensor, b: tf.Tensor, transpose_a: bool = False, transpose_b: bool = False) -> tf.Tensor:
    """tf.matmul(a, b, transpose_a, transpose_b), as (b^T a^T)^T where that was measured faster."""
    rows = a.shape[-1] if transpose_a else a.shape[0]
    columns = b.shape[0] if transpose_b else b.shape[-1]
    swap = (transpose_b and eigen_fp32_without_avx512(a.dtype) and rows is not None and columns is not None
            and columns >= MIN_ROWS_RATIO * rows)
    if swap:  # C^T = b_stored @ op(a)^T: b [N, K] is already the left operand as stored
        return tf.transpose(tf.matmul(b, a, transpose_b=not transpose_a))
    return tf.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)


def matmul(a: tf.Tensor, b: tf.Tensor, transpose_a: bool = False, transpose_b: bool = False) -> tf.Tensor:
    """tf.matmul for 2-D tensors, its product and both gradients each in the faster operand order."""

    @tf.custom_gradient
    def run(a: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, Any]:
        def grad(dc: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            # TF's MatMul gradient, case by case (a, b as stored).
            if not transpose_a and not transpose_b:
                return product(dc, b, transpose_b=True), product(a, dc, transpose_a=True)
            if not transpose_a:
                return product(dc, b), product(dc, a, transpose_a=True)
            if not transpose_b:
                return product(b, dc, transpose_b=True), product(a, dc)
            return (product(b, dc, transpose_a=True, transpose_b=True),
                    product(dc, a, transpose_a=True, transpose_b=True))

        return product(a, b, transpose_a, transpose_b), grad

    return run(a, b)
