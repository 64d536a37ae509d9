"""Convolutions on tiny feature maps computed as single matmuls (same kernels, same results, faster on CPUs).

oneDNN's convolution kernels are slow on maps of a few pixels, above all for the weight gradient in bfloat16
(digits_official, 2 CPU cores: the 1x1 -> 4x4 transposed conv of the generator takes 285 ms forward + backward
as a convolution, 12 ms as a matmul; the discriminator's 5x5 conv on 4x4 maps 336 ms vs 154 ms). Three cases
are exact rewrites as dense layers, the kernel variable unchanged:

- a 'valid' conv whose kernel covers the whole input (output 1x1): flatten, matmul;
- a 'valid' transposed conv of a 1x1 input (output kernel-sized): matmul, reshape;
- a stride-1 'same' conv on a map of at most `MAX_TOEPLITZ_PIXELS` pixels: a matmul with the conv's
  Toeplitz matrix (pixels x channels, in -> out), built from the kernel in the graph (and its gradient
  summed back onto the kernel by autodiff);
- and, not a rewrite of the forward pass: a 'same' transposed conv of such a map (the generator's 4x4 -> 8x8)
  gets its kernel gradient as one matmul (2x faster: 372 -> 185 ms forward + backward in bf16).
Everything else returns None and runs as the convolution it is.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np
import tensorflow as tf

#: Largest map (pixels) for the Toeplitz form: at 4x4 a 5x5 kernel reaches 77 % of the input pixels of each
#: output pixel, so the dense matmul does little wasted work; at 8x8 it is 28 % and the conv is faster.
MAX_TOEPLITZ_PIXELS = 16


def convolve(conv: keras.layers.Layer, x: tf.Tensor) -> tf.Tensor | None:
    """conv(x) as one matmul when `conv` (a built Conv2D / Conv2DTranspose) and x's static shape allow it."""
    h, w = x.shape[1], x.shape[2]
    form = None if h is None or w is None else _form(conv, h, w)
    if form is None:
        return None
    kh, kw = conv.kernel_size
    kernel = tf.cast(conv.kernel, x.dtype)
    if form == "transposed_kernel_grad":
        y = _transposed_conv(x, kernel, tuple(conv.strides))
    elif form == "dense_transposed":
        # kernel [kh, kw, out, in]: y[n, i, j, o] = sum_c x[n, c] * kernel[i, j, o, c]
        y = tf.matmul(tf.reshape(x, [-1, kernel.shape[3]]), tf.reshape(kernel, [-1, kernel.shape[3]]),
                      transpose_b=True)
        y = tf.reshape(y, [-1, kh, kw, conv.filters])
    elif form == "dense":
        # kernel [kh, kw, in, out] flattened in the order NHWC flattens x: one matmul to [N, 1, 1, out].
        y = tf.reshape(tf.matmul(tf.reshape(x, [-1, kh * kw * kernel.shape[2]]),
                                 tf.reshape(kernel, [-1, conv.filters])), [-1, 1, 1, conv.filters])
    else:  # toeplitz
        channels = kernel.shape[2]
        placement = tf.constant(_placement(h, w, kh, kw), kernel.dtype)  # [in pixel, out pixel, tap]
        toeplitz = tf.einsum("iot,tcd->icod", placement, tf.reshape(kernel, [kh * kw, channels, conv.filters]))
        y = tf.matmul(tf.reshape(x, [-1, h * w * channels]),
                      tf.reshape(toeplitz, [h * w * channels, h * w * conv.filters]))
        y = tf.reshape(y, [-1, h, w, conv.filters])
    if conv.use_bias:
        y = tf.nn.bias_add(y, tf.cast(conv.bias, y.dtype))
    return y


def _form(conv: keras.layers.Layer, h: int, w: int) -> str | None:
    """Which matmul form computes `conv` on an h x w map, or None: the convolution itself."""
    if conv.data_format != "channels_last" or tuple(conv.dilation_rate) != (1, 1):
        return None
    kh, kw = conv.kernel_size
    tiny = h * w <= MAX_TOEPLITZ_PIXELS
    if isinstance(conv, keras.layers.Conv2DTranspose):
        if conv.output_padding is not None:
            return None
        if (h, w) == (1, 1) and conv.padding == "valid":
            return "dense_transposed"
        return "transposed_kernel_grad" if (h, w) != (1, 1) and conv.padding == "same" and tiny else None
    if tuple(conv.strides) != (1, 1):
        return None
    if (h, w) == (kh, kw) and conv.padding == "valid":
        return "dense"
    return "toeplitz" if conv.padding == "same" and tiny and kh % 2 == 1 and kw % 2 == 1 else None


def _transposed_conv(x: tf.Tensor, kernel: tf.Tensor, strides: tuple[int, int]) -> tf.Tensor:
    """'same' transposed conv whose kernel gradient is one matmul (oneDNN's is slow on tiny inputs); the
    forward pass and the input gradient stay convolutions."""

    @tf.custom_gradient
    def run(x: tf.Tensor, kernel: tf.Tensor) -> tuple[tf.Tensor, Any]:
        n, h, w, cin = tf.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
        kh, kw, cout, _ = kernel.shape
        sh, sw = strides
        y = tf.nn.conv2d_transpose(x, kernel, tf.stack([n, h * sh, w * sw, cout]), strides, "SAME")

        def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            dx = tf.nn.conv2d(dy, kernel, strides, "SAME")
            # Uncropped output: y_full[s * m + t] += x[m] @ kernel[t]; 'same' crops (k - s) // 2 in front.
            full = tf.pad(dy, [[0, 0], [(kh - sh) // 2, (kh - sh + 1) // 2], [(kw - sw) // 2, (kw - sw + 1) // 2],
                               [0, 0]])
            taps = [full[:, i:i + sh * (h - 1) + 1:sh, j:j + sw * (w - 1) + 1:sw, :]
                    for i in range(kh) for j in range(kw)]  # each [N, h, w, out]: what x[m] met through tap t
            dk = tf.matmul(tf.reshape(x, [-1, cin]), tf.reshape(tf.concat(taps, -1), [-1, kh * kw * cout]),
                           transpose_a=True)  # [in, taps * out]
            return dx, tf.transpose(tf.reshape(dk, [cin, kh, kw, cout]), [1, 2, 3, 0])

        return y, grad

    return run(x, kernel)


@functools.cache
def _placement(h: int, w: int, kh: int, kw: int) -> np.ndarray:
    """P[i, o, t] = 1 where input pixel i reaches output pixel o through tap t of a stride-1 'same' conv
    (zero padding (kh - 1) / 2, (kw - 1) / 2; pixels and taps numbered row-major)."""
    ph, pw = kh // 2, kw // 2
    p = np.zeros([h * w, h * w, kh * kw], np.float32)
    for oi in range(h):
        for oj in range(w):
            for ti in range(kh):
                for tj in range(kw):
                    ii, ij = oi + ti - ph, oj + tj - pw
                    if 0 <= ii < h and 0 <= ij < w:
                        p[ii * w + ij, oi * w + oj, ti * kw + tj] = 1.0
    return p
