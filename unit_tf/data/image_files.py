"""Image files: finding them in folders, and the ONE way they are decoded and resized, for training and for
the translate command alike.

Decoding (PIL): EXIF orientation applied, palettes expanded, alpha dropped, then gray (luminance) or RGB; a
GIF's first frame. Resizing (TensorFlow): bilinear, antialiased, rounded to uint8. TensorFlow is imported only
when an image is resized, so the translate command refuses bad paths before importing it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from unit_tf.errors import UserError

if TYPE_CHECKING:
    import tensorflow as tf

#: What counts as an image file (matched case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _walk(folder: Path) -> list[Path]:
    """Every file under `folder`, following linked folders once (a link loop is visited once)."""
    files, seen = [], set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        files.extend(Path(root) / n for n in names)
    return files


def list_images(folder: str | Path) -> list[Path]:
    """Every file with an image extension under `folder`, recursively, sorted by relative path."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist; pass an existing folder")
    found = [p for p in _walk(folder) if is_image_file(p) and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


class UnreadableImage(Exception):
    """An image that PIL cannot decode (corrupt, truncated, not really an image)."""


def load_image(source: str | Path | bytes) -> Image.Image:
    """Decode a file (path) or encoded bytes, any mode, upright (EXIF orientation applied); UnreadableImage if
    it cannot be."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()
            return ImageOps.exif_transpose(image)
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, struct.error, ...) on bad data
        name = "image bytes" if isinstance(source, bytes) else str(source)
        raise UnreadableImage(f"{name}: {err}") from err


def to_channels(image: Image.Image, channels: int) -> np.ndarray:
    """uint8 H x W x `channels` (1: luminance, 3: RGB); alpha is dropped, palettes are expanded."""
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")  # a palette's transparency is kept in alpha, then dropped below
    try:
        array = np.asarray(image.convert("L" if channels == 1 else "RGB"), np.uint8)
    except ValueError as err:  # a mode PIL cannot convert
        raise UnreadableImage(f"image mode {image.mode}: {err}") from err
    return array[..., None] if channels == 1 else array


def decode_image(source: str | Path | bytes, channels: int = 3) -> np.ndarray:
    """A file or encoded bytes -> uint8 H x W x `channels`, upright; UnreadableImage if it cannot be decoded."""
    return to_channels(load_image(source), channels)


def resize(image: tf.Tensor | np.ndarray, height: int | tf.Tensor, width: int | tf.Tensor) -> tf.Tensor:
    """uint8 (or float in [0, 255]) [..., H, W, C] -> uint8 [..., height, width, C]: bilinear, antialiased,
    rounded; works in graphs (tensor sizes) and eagerly."""
    import tensorflow as tf

    resized = tf.image.resize(image, tf.stack([height, width]), method="bilinear", antialias=True)
    return tf.saturate_cast(tf.round(resized), tf.uint8)


def resize_shorter_side(image: tf.Tensor | np.ndarray, shorter: int) -> tf.Tensor:
    """uint8 [H, W, C] -> uint8 with the shorter side `shorter` and the aspect ratio kept (the other side
    rounded, at least `shorter`); works in graphs and eagerly."""
    import tensorflow as tf

    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    scale = shorter / tf.minimum(h, w)
    height = tf.maximum(shorter, tf.cast(tf.round(h * scale), tf.int32))
    width = tf.maximum(shorter, tf.cast(tf.round(w * scale), tf.int32))
    return resize(image, height, width)


def default_load_size(image_size: int, load_size: int = 0) -> int:
    """The shorter side training resizes images to before its image_size crop: `data.load_size`, or for 0 the
    CycleGAN/UNIT convention image_size * 286 / 256."""
    return load_size or round(image_size * 286 / 256)
