"""Readers for the digit data sets' file formats, each returning (images uint8 NxHxWxC, labels int64 N).

Formats: our npz (`x`, `y`), MNIST IDX (plain or .gz), SVHN `*_32x32.mat`, USPS `usps.h5`.
Every reader turns a missing, truncated or malformed file into a UserError naming the file.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from unit_tf.catalogue import DIGIT_CLASSES
from unit_tf.errors import UserError

Arrays = tuple[np.ndarray, np.ndarray]


def _corrupt(path: Path, what: str) -> UserError:
    return UserError(f"{path} is not a valid {what} file (truncated or corrupt); replace it with a fresh copy")


def check_arrays(x: np.ndarray, y: np.ndarray, path: Path, classes: int | None = DIGIT_CLASSES) -> Arrays:
    """Validate shapes and ranges: x uint8 NxHxWxC, y int64 in 0..classes-1 (None: any index >= 0), same N."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise UserError(
            f"{path}: expected images N x H x W x C (C = 1 or 3) and N labels, got {x.shape} and {y.shape}"
        )
    if x.dtype != np.uint8:
        raise UserError(f"{path}: images must be uint8 0..255, got {x.dtype}")
    if y.dtype.kind not in "iu":
        raise UserError(f"{path}: labels must be integer class indices, got {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0 or (classes is not None and y.max() >= classes):
        allowed = f"0..{classes - 1}" if classes is not None else ">= 0"
        raise UserError(f"{path}: labels must be class indices {allowed}, got range {y.min()}..{y.max()}")
    return x, y


def read_npz(path: Path, classes: int | None = DIGIT_CLASSES, labelled: bool = True) -> Arrays:
    """Our format (as in ../shared/data): arrays `x` (uint8 NxHxWxC) and `y` (int64 N, class indices below
    `classes`; None: any). Not `labelled`: `y` may be missing and is returned as zeros (never read)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data or (labelled and "y" not in data):
                wanted = "'x' (images) and 'y' (labels)" if labelled else "'x' (images)"
                raise UserError(f"{path} must hold arrays {wanted}; found {list(data)}")
            x = data["x"]
            y = data["y"] if labelled else np.zeros(len(x), np.int64)
    except UserError:
        raise
    except Exception:  # untrusted bytes: any parser failure means the file is damaged
        raise _corrupt(path, "npz") from None
    return check_arrays(x, y, path, classes)


def _read_maybe_gz(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except Exception:  # OSError, EOFError, zlib.error, BadGzipFile ...
        raise _corrupt(path, "gzip") from None


def read_idx(images_path: Path, labels_path: Path) -> Arrays:
    """MNIST IDX files (big-endian header; magic 0x803 for images, 0x801 for labels)."""
    images, labels = _read_maybe_gz(images_path), _read_maybe_gz(labels_path)
    if len(images) < 16 or struct.unpack(">I", images[:4])[0] != 0x803:
        raise _corrupt(images_path, "IDX image")
    if len(labels) < 8 or struct.unpack(">I", labels[:4])[0] != 0x801:
        raise _corrupt(labels_path, "IDX label")
    n, h, w = struct.unpack(">III", images[4:16])
    (m,) = struct.unpack(">I", labels[4:8])
    if len(images) != 16 + n * h * w:
        raise _corrupt(images_path, "IDX image")
    if len(labels) != 8 + m:
        raise _corrupt(labels_path, "IDX label")
    x = np.frombuffer(images, np.uint8, offset=16).reshape(n, h, w, 1)
    y = np.frombuffer(labels, np.uint8, offset=8).astype(np.int64)
    return check_arrays(x, y, images_path)


def read_svhn_mat(path: Path) -> Arrays:
    """Official SVHN cropped digits: `X` is 32x32x3xN, `y` is Nx1 with 10 meaning digit 0."""
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
        x, y = np.asarray(data["X"]), np.asarray(data["y"])
    except Exception:  # scipy raises many types on damaged files
        raise _corrupt(path, "SVHN .mat") from None
    if x.ndim != 4 or x.shape[2] != 3:
        raise UserError(f"{path}: expected X of shape 32 x 32 x 3 x N, got {x.shape}")
    if y.dtype.kind not in "iuf" or y.size != x.shape[3]:
        raise UserError(f"{path}: expected y with one numeric label per image, got {y.dtype} {y.shape}")
    x = np.ascontiguousarray(np.transpose(x, (3, 0, 1, 2)))
    y = y.reshape(-1).astype(np.int64) % 10  # label 10 -> digit 0
    return check_arrays(x, y, path)


def read_usps_h5(path: Path, split: str) -> Arrays:
    """The common `usps.h5`: groups train/test with `data` float [0, 1] (N x 256) and `target` digits."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            data = np.asarray(f[split]["data"])
            target = np.asarray(f[split]["target"])
    except Exception:  # h5py raises OSError, KeyError, ValueError, RuntimeError ... on damaged files
        raise _corrupt(path, "USPS .h5") from None
    side = int(round(np.sqrt(data.shape[-1]))) if data.ndim == 2 else 0
    if data.ndim != 2 or side * side != data.shape[-1]:
        raise UserError(f"{path}: expected {split}/data of shape N x 256, got {data.shape}")
    x = np.clip(np.round(data * 255.0), 0, 255).astype(np.uint8).reshape(-1, side, side, 1)
    return check_arrays(x, target.reshape(-1), path)
