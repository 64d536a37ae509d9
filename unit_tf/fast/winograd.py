"""Stride-1 'same' convolutions by Winograd's minimal filtering F(m x m, r x r) (Lavin & Gray, "Fast Algorithms
for Convolutional Neural Networks", CVPR 2016): a float32 CPU fast path, see unit_tf.fast.

Each m x m block of outputs is computed from its n x n input tile d (n = m + r - 1) as
Y = A^T [(G K G^T) . (B^T d B)] A: the products . of all tiles and channels are n^2 matmuls [tiles, in] x
[in, out], against the direct conv's r^2 m^2 multiply-adds per block and channel pair (F(4x4, 5x5): 64 against
400); the transforms are small matmuls. The same real numbers as the convolution (float64: equal to 1e-14);
the transforms round differently, so in float32 it equals the conv to rounding a few times larger than the
conv's own (bounded in tests/test_fast_paths.py). Float32 only: bfloat16 would round the transforms too coarsely.

Both gradients stay in the Winograd domain, each the transpose of a forward step (see `conv`).
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Any

import numpy as np
import tensorflow as tf

#: Output block size m: F(4x4, 5x5) reads 8x8 tiles at stride 4 (maps whose height and width are multiples of 4).
TILE = 4

#: Name scope of the form's ops (benchmarks/throughput.py finds a graph's Winograd convs by it).
SCOPE = "winograd"

#: Interpolation points of the Toom-Cook construction (the last point is infinity): small, reciprocal pairs keep
#: the transforms' entries (and their rounding) small.
POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2), 3, -3)


@functools.cache
def matrices(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A^T [m, n], G [n, r], B^T [n, n] of F(m, r), n = m + r - 1 (Toom-Cook with the point at infinity), such
    that y = A^T [(G g) . (B^T d)] is the correlation y_i = sum_k d_{i + k} g_k of d [n] with g [r]."""
    n = m + r - 1
    if n - 1 > len(POINTS):
        raise ValueError(f"F({m}, {r}) needs {n - 1} finite points, {len(POINTS)} defined")
    pts = [Fraction(p) for p in POINTS[:n - 1]]
    a_t = [[p ** i for p in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    g = []
    for j, p in enumerate(pts):
        scale = np.prod([p - q for k, q in enumerate(pts) if k != j])
        g.append([p ** k / scale for k in range(r)])
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    # B^T solves sum_j A^T[i, j] G[j, k] B^T[j, col] = [col == i + k] exactly (one linear system per column col).
    system = np.array([[float(a_t[i][j] * g[j][k]) for j in range(n)] for i in range(m) for k in range(r)])
    b_t = np.stack([np.linalg.lstsq(system, [float(col == i + k) for i in range(m) for k in range(r)],
                                    rcond=None)[0] for col in range(n)], axis=1)
    exact = np.round(b_t * 64) / 64  # the entries are short binary fractions: make them exact
    if np.abs(exact - b_t).max() > 1e-9:
        raise ValueError(f"F({m}, {r}): B^T is not a matrix of multiples of 1/64")
    return np.array(a_t, np.float64), np.array(g, np.float64), exact


def applies(h: int, w: int, kernel_size: tuple[int, int]) -> bool:
    """Whether an h x w map with this kernel (square, odd, at most TILE + 1) tiles into TILE x TILE blocks."""
    kh, kw = kernel_size
    return kh == kw and kh % 2 == 1 and 3 <= kh <= TILE + 1 and h % TILE == 0 and w % TILE == 0


def conv(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """tf.nn.conv2d(x, kernel, 1, "SAME") for x [N, H, W, in] and kernel [r, r, in, out] where `applies`, by
    Winograd's F(TILE x TILE, r x r). Both gradients are the transposed transforms around matmuls too:
    dM = A dY A^T, dV = dM U^T -> dx (B dV B^T, tiles added where they overlap), dU = V^T dM -> dK = G^T dU G."""
    h, w = x.shape[1], x.shape[2]

    @tf.custom_gradient
    def run(x: tf.Tensor, kernel: tf.Tensor) -> tuple[tf.Tensor, Any]:
        v, u = _input_tiles(x, kernel.shape[0]), _kernel_tiles(kernel)
        y = _output(tf.matmul(v, u), h, w, kernel.shape[0])  # n^2 products, each a matmul over input channels

        def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            dm = _output_grad(dy, kernel.shape[0])
            dx = _input_grad(tf.matmul(dm, u, transpose_b=True), h, w, kernel.shape[0])
            return dx, _kernel_grad(tf.matmul(v, dm, transpose_a=True), kernel.shape)

        return y, grad

    with tf.name_scope(SCOPE):
        return run(x, kernel)


def _kron(matrix: np.ndarray, dtype: tf.DType) -> tf.Tensor:
    """The 2-D transform X -> M X M^T of row-major flattened X as one matrix: kron(M, M)."""
    return tf.constant(np.kron(matrix, matrix), dtype)


@functools.cache
def _tile_transform(r: int) -> np.ndarray:
    """kron(B^T, B^T) [n^2, 4 TILE^2] with its columns in the order the tiles are cut, (s, t, i, j): tile pixel
    (TILE s + i, TILE t + j), the two TILE x TILE halves in each direction; zero columns past the tile (n < 2 TILE)."""
    n = TILE + r - 1
    b = np.kron(matrices(TILE, r)[2], matrices(TILE, r)[2])
    out = np.zeros([n * n, 4 * TILE * TILE])
    for col, (s, t, i, j) in enumerate(np.ndindex(2, 2, TILE, TILE)):
        row, column = TILE * s + i, TILE * t + j
        if row < n and column < n:
            out[:, col] = b[:, row * n + column]
    return out


def _blocks(x: tf.Tensor, r: int) -> tuple[tf.Tensor, int, int]:
    """x zero-padded by r // 2 (and on to whole blocks) as TILE x TILE blocks [i, j, N, block row, column, in]."""
    h, w, c, pad = x.shape[1], x.shape[2], x.shape[3], r // 2
    bh, bw = h // TILE + 1, w // TILE + 1
    padded = tf.pad(x, [[0, 0], [pad, TILE * bh - h - pad], [pad, TILE * bw - w - pad], [0, 0]])
    blocks = tf.reshape(padded, [-1, bh, TILE, bw, TILE, c])
    return tf.transpose(blocks, [2, 4, 0, 1, 3, 5]), bh, bw


def _input_tiles(x: tf.Tensor, r: int) -> tf.Tensor:
    """V = B^T d B of every n x n tile d of x (stride TILE, zero padding r // 2): [n^2, N * tiles, in].

    Tile (k, l) is blocks (k, l), (k, l + 1), (k + 1, l), (k + 1, l + 1) of the padded map: four shifted windows
    of the block grid, each already in the (pixel, tile, channel) order the matmuls read."""
    blocks, bh, bw = _blocks(x, r)
    tiles = tf.concat([blocks[:, :, :, s:s + bh - 1, t:t + bw - 1] for s in (0, 1) for t in (0, 1)], axis=0)
    v = tf.matmul(tf.constant(_tile_transform(r), x.dtype), tf.reshape(tiles, [4 * TILE * TILE, -1]))
    return tf.reshape(v, [v.shape[0], -1, x.shape[3]])


def _input_grad(dv: tf.Tensor, h: int, w: int, r: int) -> tf.Tensor:
    """The transpose of _input_tiles: dx [N, h, w, in] from dV [n^2, N * tiles, in]."""
    c, pad = dv.shape[2], r // 2
    th, tw = h // TILE, w // TILE
    tiles = tf.matmul(tf.constant(_tile_transform(r), dv.dtype), tf.reshape(dv, [dv.shape[0], -1]),
                      transpose_a=True)
    tiles = tf.reshape(tiles, [2, 2, TILE, TILE, -1, th, tw, c])  # [s, t, i, j, N, tile row, column, in]
    blocks = tf.add_n([tf.pad(tiles[s, t], [[0, 0], [0, 0], [0, 0], [s, 1 - s], [t, 1 - t], [0, 0]])
                       for s in (0, 1) for t in (0, 1)])  # [i, j, N, block row, block column, in]
    padded = tf.reshape(tf.transpose(blocks, [2, 3, 0, 4, 1, 5]), [-1, TILE * (th + 1), TILE * (tw + 1), c])
    return padded[:, pad:pad + h, pad:pad + w, :]


def _kernel_tiles(kernel: tf.Tensor) -> tf.Tensor:
    """U = G K G^T per (in, out): [n^2, in, out]."""
    r, _, c, d = kernel.shape
    g = matrices(TILE, r)[1]
    return tf.reshape(tf.matmul(_kron(g, kernel.dtype), tf.reshape(kernel, [r * r, c * d])), [-1, c, d])


def _kernel_grad(du: tf.Tensor, kernel_shape: tf.TensorShape) -> tf.Tensor:
    """The transpose of _kernel_tiles: dK [r, r, in, out] from dU [n^2, in, out]."""
    r, _, c, d = kernel_shape
    g = matrices(TILE, r)[1]
    return tf.reshape(tf.matmul(_kron(g, du.dtype), tf.reshape(du, [-1, c * d]), transpose_a=True), kernel_shape)


def _output(m: tf.Tensor, h: int, w: int, r: int) -> tf.Tensor:
    """Y = A^T M A of every tile's products m [n^2, N * tiles, out]: [N, h, w, out]."""
    a_t, d = matrices(TILE, r)[0], m.shape[2]
    y = tf.reshape(tf.matmul(_kron(a_t, m.dtype), tf.reshape(m, [m.shape[0], -1])),
                   [TILE, TILE, -1, h // TILE, w // TILE, d])  # [i, j, N, tile row, tile column, out]
    return tf.reshape(tf.transpose(y, [2, 3, 0, 4, 1, 5]), [-1, h, w, d])


def _output_grad(dy: tf.Tensor, r: int) -> tf.Tensor:
    """The transpose of _output: dM = A dY A^T of dy's TILE x TILE blocks, [n^2, N * tiles, out]."""
    h, w, d = dy.shape[1], dy.shape[2], dy.shape[3]
    a_t = matrices(TILE, r)[0]
    blocks = tf.reshape(dy, [-1, h // TILE, TILE, w // TILE, TILE, d])
    blocks = tf.reshape(tf.transpose(blocks, [2, 4, 0, 1, 3, 5]), [TILE * TILE, -1])  # [(i, j), (N, tiles, out)]
    return tf.reshape(tf.matmul(_kron(a_t, dy.dtype), blocks, transpose_a=True), [a_t.shape[1] ** 2, -1, d])
