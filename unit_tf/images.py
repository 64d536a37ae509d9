"""Image grids for samples and evaluation (PNG files and TensorBoard images)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from unit_tf.files import write_bytes

#: Images per domain in a sample grid (training samples and evaluation).
SAMPLE_IMAGES = 8

#: Rows of a sample grid: for each domain the input, its reconstruction, translation and cycle.
GRID_ROWS = ("x_a", "x_aa", "x_ab", "x_aba", "x_b", "x_bb", "x_ba", "x_bab")


def to_uint8_rgb(images: tf.Tensor | np.ndarray) -> np.ndarray:
    """[-1, 1] float N x H x W x C (C = 1 or 3) -> uint8 RGB."""
    x = np.asarray(images, np.float32)
    x = np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def make_grid(rows: Sequence[tf.Tensor | np.ndarray], pad: int = 2) -> np.ndarray:
    """Tile rows of equally sized images into one uint8 RGB image, `pad` pixels of gray between them."""
    rows = [to_uint8_rgb(r) for r in rows]
    n = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    grid = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 128, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            grid[top:top + h, left:left + w] = image
    return grid


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 H x W x 3 image; the file appears complete or not at all (write, then rename)."""
    return write_bytes(path, tf.io.encode_png(image).numpy())
