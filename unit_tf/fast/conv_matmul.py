"""Convolutions on small feature maps, or their kernel gradients, computed as matmuls (same kernels, same
results; a CPU fast path, see unit_tf.fast).

oneDNN's convolution kernels are slow on maps of a few pixels, above all for the weight gradient in bfloat16
(the digit generator's 1x1 -> 4x4 transposed conv, the discriminator's 5x5 conv on 4x4 maps). These are
exact rewrites, the kernel variable unchanged:

- a 'valid' conv whose kernel covers the whole input (output 1x1): flatten, matmul;
- a 'valid' transposed conv of a 1x1 input (output kernel-sized): matmul, reshape;
- a stride-1 'same' conv on a map of at most `MAX_TOEPLITZ_PIXELS` pixels: a matmul with the conv's
  Toeplitz matrix (pixels x channels, in -> out), built from the kernel in the graph, its gradient summed
  back onto the kernel;
- in float32, a stride-1 'same' 5x5 conv on a larger map (up to `MAX_WINOGRAD_PIXELS`, at least
  `MIN_WINOGRAD_CHANNELS` input channels: the discriminator's 8x8 and 16x16): Winograd's minimal filtering
  (unit_tf.fast.winograd), matmuls in a transformed domain with 6.25x fewer multiplications, equal to the conv
  to float rounding a few times larger than its own;
- a 'same' transposed conv of such a map whose kernel is a multiple of its stride (the generator's
  4x4 -> 8x8): one matmul gives every input pixel's kernel-sized contribution, which are then added where
  they overlap (col2im); autodiff makes both gradients matmuls too (from 8x8 maps on the convolution was
  measured faster, so larger maps keep it);
- not rewrites of the forward pass: the kernel gradient as one matmul per s x s block of taps
  (`_kernel_grad_by_blocks`; stride 1: per tap) for a bfloat16 stride-1 'same' conv on a map of at most
  `MAX_KERNEL_GRAD_PIXELS` pixels, a 'same' transposed conv of such a map (stride dividing the kernel: the
  generator's 8x8 -> 16x16) and a bfloat16 strided 'valid' conv on a map of at most `MAX_STRIDED_GRAD_PIXELS`
  pixels (the encoder's padded 20x20 -> 8x8).
On CPUs without AVX-512 (where they were measured faster), in float32: a stride-1 'same' conv (odd kernel, at
least `MIN_FLIPPED_CHANNELS` input channels) on a larger map takes its input gradient as a forward conv with
the flipped kernel (oneDNN's backward-data kernel runs at half its forward kernel's speed there), and the
matmuls above take the operand order of `unit_tf.fast.matmul`.
Everything else returns None and runs as the convolution it is.

Whether these run at all is the caller's decision (`unit_tf.fast.enabled(model.fast_paths)`, in ConvBlock):
all of them work around oneDNN (CPU) kernels, none was measured on cuDNN.
Measured timings: docs/performance.md (fast paths).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from unit_tf.fast import fp32_without_avx512, winograd
from unit_tf.fast.matmul import matmul, product

#: Largest map (pixels) for the Toeplitz form: at 4x4 a 5x5 kernel reaches 77 % of the input pixels of each
#: output pixel, so the dense matmul does little wasted work; at 8x8 it is 28 % and the conv is faster.
MAX_TOEPLITZ_PIXELS = 16

#: Largest map on which a bfloat16 stride-1 conv takes its kernel gradient tap by tap (8x8: the D's third
#: layer), and a transposed conv (any dtype) block by block; on 16x16 maps oneDNN's own kernel gradients are
#: as fast or faster.
MAX_KERNEL_GRAD_PIXELS = 64

#: Fewest input channels for which a float32 stride-1 'same' conv takes its input gradient as a forward conv
#: with the flipped kernel (CPUs without AVX-512): from 8 channels up it was measured faster than oneDNN's
#: backward-data kernel, on 3 slower.
MIN_FLIPPED_CHANNELS = 8

#: A float32 stride-1 'same' 5x5 conv on a map of 8x8 up to this many pixels, height and width multiples of 4,
#: with at least MIN_WINOGRAD_CHANNELS input channels runs by Winograd's F(4x4, 5x5) (unit_tf.fast.winograd):
#: measured faster on the discriminator's 8x8 and 16x16 maps (128 and 64 channels) on CPUs with and without
#: AVX-512. Not where it was measured slower (3 input channels; 3x3 kernels: F(4x4, 3x3) saves too little
#: arithmetic for its transforms) or not measured (larger maps).
MAX_WINOGRAD_PIXELS = 256
MIN_WINOGRAD_CHANNELS = 64
WINOGRAD_KERNEL = (5, 5)

#: Largest (padded) input on which a bfloat16 strided 'valid' conv takes its kernel gradient block by block:
#: the digit encoder's 20x20 -> 8x8; on its 36x36 first layer (5 channels) and in float32 oneDNN's kernel
#: gradient is faster.
MAX_STRIDED_GRAD_PIXELS = 400


def convolve(conv: keras.layers.Layer, x: tf.Tensor, bias: bool = True) -> tf.Tensor | None:
    """conv(x) as one matmul when `conv` (a built Conv2D / Conv2DTranspose) and x's static shape allow it, else
    None (run the convolution). Only for callers whose `unit_tf.fast.enabled(...)` is true (CPUs). `bias=False`
    leaves out conv's bias (the caller adds it later, e.g. after a max-pool, on fewer elements)."""
    h, w = x.shape[1], x.shape[2]
    form = None if h is None or w is None else _form(conv, h, w, x.dtype)
    if form is None:
        return None
    kh, kw = conv.kernel_size
    kernel = tf.cast(conv.kernel, x.dtype)
    if form == "tap_kernel_grad":
        y = _conv_tap_kernel_grad(x, kernel)
    elif form == "block_kernel_grad":
        y = _transposed_block_kernel_grad(x, kernel, conv.strides[0])
    elif form == "strided_kernel_grad":
        y = _strided_block_kernel_grad(x, kernel, conv.strides[0])
    elif form == "winograd":
        y = winograd.conv(x, kernel)
    elif form == "flipped_input_grad":
        y = _conv_flipped_input_grad(x, kernel)
    elif form == "overlap_add":
        y = _overlap_add(x, kernel, conv.strides[0])
    elif form == "dense_transposed":
        # kernel [kh, kw, out, in]: y[n, i, j, o] = sum_c x[n, c] * kernel[i, j, o, c]
        y = matmul(tf.reshape(x, [-1, kernel.shape[3]]), tf.reshape(kernel, [-1, kernel.shape[3]]),
                   transpose_b=True)
        y = tf.reshape(y, [-1, kh, kw, conv.filters])
    elif form == "dense":
        # kernel [kh, kw, in, out] flattened in the order NHWC flattens x: one matmul to [N, 1, 1, out].
        y = tf.reshape(matmul(tf.reshape(x, [-1, kh * kw * kernel.shape[2]]),
                              tf.reshape(kernel, [-1, conv.filters])), [-1, 1, 1, conv.filters])
    else:
        y = _toeplitz_conv(x, kernel)
    if conv.use_bias and bias:
        y = tf.nn.bias_add(y, tf.cast(conv.bias, y.dtype))
    return y


def _form(conv: keras.layers.Layer, h: int, w: int, dtype: tf.DType) -> str | None:
    """Which matmul form computes `conv` on an h x w map of `dtype`, or None: the convolution itself."""
    if conv.data_format != "channels_last" or tuple(conv.dilation_rate) != (1, 1):
        return None
    kh, kw = conv.kernel_size
    stride = conv.strides[0]
    strided = stride >= 2 and tuple(conv.strides) == (stride, stride)
    tiny = h * w <= MAX_TOEPLITZ_PIXELS
    if isinstance(conv, keras.layers.Conv2DTranspose):
        if conv.output_padding is not None:
            return None
        if (h, w) == (1, 1) and conv.padding == "valid":
            return "dense_transposed"
        blocks = strided and conv.padding == "same" and kh % stride == 0 and kw % stride == 0
        if blocks and tiny:
            return "overlap_add"
        return "block_kernel_grad" if blocks and h * w <= MAX_KERNEL_GRAD_PIXELS else None
    if tuple(conv.strides) != (1, 1):
        blocks = strided and conv.padding == "valid" and dtype == tf.bfloat16 and h * w <= MAX_STRIDED_GRAD_PIXELS
        return "strided_kernel_grad" if blocks else None
    if (h, w) == (kh, kw) and conv.padding == "valid":
        return "dense"
    if conv.padding != "same" or kh % 2 == 0 or kw % 2 == 0:
        return None
    if tiny:
        return "toeplitz"
    if dtype == tf.bfloat16 and h * w <= MAX_KERNEL_GRAD_PIXELS:
        return "tap_kernel_grad"
    if (dtype == tf.float32 and (kh, kw) == WINOGRAD_KERNEL and winograd.applies(h, w, (kh, kw))
            and h * w <= MAX_WINOGRAD_PIXELS and conv.kernel.shape[2] >= MIN_WINOGRAD_CHANNELS):
        return "winograd"
    flipped = fp32_without_avx512(dtype) and conv.kernel.shape[2] >= MIN_FLIPPED_CHANNELS
    return "flipped_input_grad" if flipped else None


def _toeplitz_conv(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Stride-1 'same' conv as one matmul with the conv's Toeplitz matrix T [(in pixel, channel), (out pixel,
    channel)].

    T is gathered from the kernel's taps (plus one zero block for pixel pairs no tap joins) straight into the
    layout its matmul reads fastest, so the large T is written once and never transposed: the input gradient
    dy @ T^T reads T as [(c, i), (o, d)] (x reordered to channel-major); the forward pass x @ T reads the same
    T on CPUs with AVX-512 and in bfloat16, elsewhere T^T as [(d, o), (i, c)] (in unit_tf.fast.matmul's
    swapped order).
    The kernel gradient: where T^T is used, one matmul per tap over the pixels it joins
    (`_kernel_grad_by_valid_taps`); else dT's pixel-pair blocks summed onto their taps, dT formed as a batch of
    per-pair products x_i^T dy_o already in (pair, channels) order, so no transpose of the large dT is needed.
    """
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    kh, kw, _, d = kernel.shape
    p, taps = h * w, kh * kw
    placed = _placement(h, w, kh, kw)  # [i, o, tap]
    tap_of_pair = np.where(placed.any(-1), placed.argmax(-1), taps).astype(np.int32)  # [i, o]; taps: none
    output_major = fp32_without_avx512(x.dtype)
    if not output_major:
        placement = tf.constant(placed.reshape(p * p, taps), kernel.dtype)  # [(i, o), tap]

    @tf.custom_gradient
    def run(x: tf.Tensor, kernel: tf.Tensor) -> tuple[tf.Tensor, Any]:
        k = tf.concat([tf.reshape(kernel, [taps, c, d]), tf.zeros([1, c, d], kernel.dtype)], axis=0)  # + zero

        def input_major() -> tf.Tensor:  # T [(c, i), (o, d)]
            return tf.reshape(tf.gather(tf.transpose(k, [1, 0, 2]), tap_of_pair, axis=1), [c * p, p * d])

        if output_major:
            t_out = tf.reshape(tf.gather(tf.transpose(k, [2, 0, 1]), tap_of_pair.T, axis=1), [d * p, p * c])
            y = product(tf.reshape(x, [-1, p * c]), t_out, transpose_b=True)  # [N, (d, o)]
            y = tf.transpose(tf.reshape(y, [-1, d, p]), [0, 2, 1])  # [N, o, d]
        else:
            t_in = input_major()
            y = tf.matmul(tf.reshape(tf.transpose(tf.reshape(x, [-1, p, c]), [0, 2, 1]), [-1, c * p]), t_in)

        def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            dy = tf.reshape(dy, [-1, p * d])
            dx = tf.transpose(tf.reshape(product(dy, input_major() if output_major else t_in, transpose_b=True),
                                         [-1, c, p]), [0, 2, 1])
            if output_major:
                d_kernel = _kernel_grad_by_valid_taps(x, tf.reshape(dy, [-1, h, w, d]), kh, kw)
            else:
                x_pixels = tf.transpose(tf.reshape(x, [-1, p, c]), [1, 2, 0])[:, None]  # [i, 1, c, N]
                dy_pixels = tf.transpose(tf.reshape(dy, [-1, p, d]), [1, 0, 2])[None]  # [1, o, N, d]
                d_blocks = tf.reshape(tf.matmul(x_pixels, dy_pixels), [p * p, c * d])  # [(i, o), (c, d)]
                d_kernel = tf.matmul(placement, d_blocks, transpose_a=True)
            return tf.reshape(dx, tf.shape(x)), tf.reshape(d_kernel, kernel.shape)

        return tf.reshape(y, [-1, h, w, d]), grad

    return run(x, kernel)


def _kernel_grad_by_valid_taps(x: tf.Tensor, dy: tf.Tensor, kh: int, kw: int) -> tf.Tensor:
    """Kernel gradient [kh, kw, in, out] of a stride-1 'same' conv (odd kernel) of x whose output gradient is dy:
    per tap one matmul over just the output pixels whose input pixel lies inside the map (no padding zeros:
    on 4x4 maps a 5x5 kernel's taps reach 196 of the 400 padded pixel pairs). x is read channel-major, so each
    tap's slice is the left operand as stored: TF's MatMul reading a transposed left operand was slower."""
    h, w, c, d = x.shape[1], x.shape[2], x.shape[3], dy.shape[3]
    ph, pw = kh // 2, kw // 2
    x = tf.transpose(x, [3, 0, 1, 2])  # [c, N, h, w]
    taps = []
    for ti in range(kh):
        for tj in range(kw):
            top, bottom = max(0, ph - ti), min(h, h + ph - ti)  # output rows whose input row is in the map
            left, right = max(0, pw - tj), min(w, w + pw - tj)
            if top >= bottom or left >= right:
                taps.append(tf.zeros([c, d], x.dtype))
                continue
            x_tap = x[:, :, top + ti - ph:bottom + ti - ph, left + tj - pw:right + tj - pw]
            taps.append(tf.matmul(tf.reshape(x_tap, [c, -1]), tf.reshape(dy[:, top:bottom, left:right, :], [-1, d])))
    return tf.reshape(tf.stack(taps), [kh, kw, c, d])


def _with_kernel_grad(x: tf.Tensor, kernel: tf.Tensor, forward: Callable, input_grad: Callable,
                      kernel_grad: Callable) -> tf.Tensor:
    """forward(x, kernel), a oneDNN convolution, with the gradients input_grad(dy, x, kernel) and
    kernel_grad(x, dy): whichever of oneDNN's backward kernels is slow for it replaced."""

    @tf.custom_gradient
    def run(x: tf.Tensor, kernel: tf.Tensor) -> tuple[tf.Tensor, Any]:
        def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return input_grad(dy, x, kernel), kernel_grad(x, dy)

        return forward(x, kernel), grad

    return run(x, kernel)


def _kernel_grad_by_blocks(x: tf.Tensor, dy: tf.Tensor, stride: int, kernel_shape: tf.TensorShape) -> tf.Tensor:
    """Kernel gradient [kh, kw, in, out] of a 'valid' stride-s conv of x (padded already) whose output gradient
    is dy, as one matmul per s x s block of taps (stride 1: per tap).

    dK[s * a + r] = sum_m x[s * (m + a) + r]^T dy[m]: space_to_depth(x) shifted by (a, b) holds every phase
    (r, r') of block (a, b); taps past the kernel's edge (a kernel not a multiple of s) are computed and dropped.
    """
    kh, kw, cin, cout = kernel_shape
    qh, qw = -(-kh // stride), -(-kw // stride)
    if stride > 1:
        x = tf.pad(x, [[0, 0], [0, -x.shape[1] % stride], [0, -x.shape[2] % stride], [0, 0]])
        x = tf.nn.space_to_depth(x, stride)  # [N, ceil(H / s), ceil(W / s), (r, r', in)]
    h, w, dy2 = dy.shape[1], dy.shape[2], tf.reshape(dy, [-1, cout])
    blocks = [tf.matmul(tf.reshape(x[:, a:a + h, b:b + w, :], [-1, x.shape[-1]]), dy2, transpose_a=True)
              for a in range(qh) for b in range(qw)]  # each [(r, r', in), out]
    d_kernel = tf.reshape(tf.stack(blocks), [qh, qw, stride, stride, cin, cout])  # a b r r' in out
    d_kernel = tf.reshape(tf.transpose(d_kernel, [0, 2, 1, 3, 4, 5]), [qh * stride, qw * stride, cin, cout])
    return d_kernel[:kh, :kw]


def _conv_tap_kernel_grad(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Stride-1 'same' conv (odd kernel) whose kernel gradient is one matmul per tap over the pixels it joins
    (bf16: the D's 8x8 maps)."""
    kh, kw = kernel.shape[0], kernel.shape[1]
    return _with_kernel_grad(
        x, kernel,
        forward=lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"),
        input_grad=lambda dy, x, k: tf.nn.conv2d_transpose(dy, k, tf.shape(x), 1, "SAME"),
        kernel_grad=lambda x, dy: _kernel_grad_by_valid_taps(x, dy, kh, kw),
    )


def _conv_flipped_input_grad(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Stride-1 'same' conv (odd kernel) whose input gradient is a forward conv of dy with the kernel flipped
    in space and its in / out channels swapped: dx[p] = sum_t dy[p - t + c] K[t]^T, the same sum oneDNN's
    backward-data kernel computes, at its forward kernel's speed (float32, CPUs without AVX-512)."""
    return _with_kernel_grad(
        x, kernel,
        forward=lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"),
        input_grad=lambda dy, x, k: tf.nn.conv2d(dy, tf.transpose(tf.reverse(k, [0, 1]), [0, 1, 3, 2]), 1,
                                                 "SAME"),
        kernel_grad=lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(kernel), out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME"),
    )


def _strided_block_kernel_grad(x: tf.Tensor, kernel: tf.Tensor, stride: int) -> tf.Tensor:
    """'valid' conv with stride s whose kernel gradient is one matmul per s x s block of taps (bf16: the digit
    encoder's 20x20 -> 8x8)."""
    return _with_kernel_grad(
        x, kernel,
        forward=lambda x, k: tf.nn.conv2d(x, k, stride, "VALID"),
        input_grad=lambda dy, x, k: tf.nn.conv2d_transpose(dy, k, tf.shape(x), stride, "VALID"),
        kernel_grad=lambda x, dy: _kernel_grad_by_blocks(x, dy, stride, kernel.shape),
    )


def _transposed_block_kernel_grad(x: tf.Tensor, kernel: tf.Tensor, stride: int) -> tf.Tensor:
    """'same' transposed conv (stride s dividing the kernel) whose kernel gradient is one matmul per s x s
    block of taps (the digit generator's 8x8 -> 16x16).

    A transposed conv is the input gradient of the strided conv with the same kernel [kh, kw, out, in], so its
    kernel gradient is that conv's, with the roles swapped: the conv's input is dy padded as 'same' pads
    ((k - s) // 2 in front), its output gradient is x.
    """
    kh, kw, cout, _ = kernel.shape
    top, left = (kh - stride) // 2, (kw - stride) // 2

    def forward(x: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
        shape = tf.stack([tf.shape(x)[0], stride * x.shape[1], stride * x.shape[2], cout])
        return tf.nn.conv2d_transpose(x, k, shape, stride, "SAME")

    return _with_kernel_grad(
        x, kernel, forward,
        input_grad=lambda dy, x, k: tf.nn.conv2d(dy, k, stride, "SAME"),
        kernel_grad=lambda x, dy: _kernel_grad_by_blocks(
            tf.pad(dy, [[0, 0], [top, kh - stride - top], [left, kw - stride - left], [0, 0]]), x, stride,
            kernel.shape),
    )


def _overlap_add(x: tf.Tensor, kernel: tf.Tensor, stride: int) -> tf.Tensor:
    """'same' transposed conv, stride s dividing the kernel size, as one matmul plus col2im.

    y_full[s * m + t] += x[m] @ kernel[t]^T; with t = s * a + r (r < s) the contributions of offset (a, b)
    land on the stride-s grid shifted by (s * a, s * b): depth_to_space places them, and each grid is cut to the
    'same' output window and padded into place (tf.slice + tf.pad, whose gradients are a pad and a slice:
    cropping one padded sum instead costs a slower StridedSliceGrad).
    """
    h, w, cin = x.shape[1], x.shape[2], x.shape[3]
    kh, kw, cout, _ = kernel.shape
    qh, qw = kh // stride, kw // stride
    out_h, out_w = stride * h, stride * w
    top, left = (kh - stride) // 2, (kw - stride) // 2  # 'same' crops (k - s) // 2 in front
    # kernel [(a r), (b s'), out, in] -> [in, (a, b, r, s', out)]: each (a, b) block is one contiguous chunk.
    k = tf.transpose(tf.reshape(kernel, [qh, stride, qw, stride, cout, cin]), [5, 0, 2, 1, 3, 4])
    contributions = tf.matmul(tf.reshape(x, [-1, cin]), tf.reshape(k, [cin, kh * kw * cout]))
    placed = []
    for index, chunk in enumerate(tf.split(contributions, qh * qw, axis=1)):
        a, b = divmod(index, qw)
        row, col = stride * a - top, stride * b - left  # output position of the grid's first row / column
        if abs(row) >= out_h or abs(col) >= out_w:
            continue  # a kernel much larger than the map: this block lands wholly in the cropped margin
        grid = tf.nn.depth_to_space(tf.reshape(chunk, [-1, h, w, stride * stride * cout]), stride)
        cut = tf.slice(grid, [0, max(0, -row), max(0, -col), 0],
                       [-1, out_h - abs(row), out_w - abs(col), -1])
        placed.append(tf.pad(cut, [[0, 0], [max(0, row), max(0, -row)], [max(0, col), max(0, -col)], [0, 0]]))
    return tf.add_n(placed)


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
