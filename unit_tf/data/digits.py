"""The digit domains (MNIST, USPS, SVHN, MNIST-M; listed in unit_tf.catalogue): where their files are found, in the
documented order.

1. `--data-dir DIR` or $UNIT_DATA_DIR: `DIR/<domain>/{train,test}.npz`, else the official raw files there;
2. TFDS (`mnist`, `svhn_cropped`), which downloads on first use;
3. otherwise one error line naming the data set and both ways to provide it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np

from unit_tf.catalogue import DIGIT_DOMAINS, DigitDomain
from unit_tf.data import formats
from unit_tf.errors import UserError

SPLITS = ("train", "test")


def data_dir_from_env(data_dir: str | None) -> Path | None:
    """The explicit --data-dir, else $UNIT_DATA_DIR, else None."""
    value = data_dir or os.environ.get("UNIT_DATA_DIR")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise UserError(f"data directory {path} does not exist; pass an existing folder to --data-dir")
    return path


def _first_existing(folder: Path, names: list[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def load_local(domain: DigitDomain, split: str, data_dir: Path) -> formats.Arrays | None:
    """Read DIR/<domain>/ in our npz format or the official raw format; None if nothing is there."""
    folder = data_dir / domain.name
    npz = folder / f"{split}.npz"
    if npz.is_file():
        return formats.read_npz(npz)
    if domain.name == "mnist":
        prefix = "train" if split == "train" else "t10k"
        images = _first_existing(folder, [f"{prefix}-images{s}" for s in
                                          ("-idx3-ubyte", ".idx3-ubyte", "-idx3-ubyte.gz", ".idx3-ubyte.gz")])
        labels = _first_existing(folder, [f"{prefix}-labels{s}" for s in
                                          ("-idx1-ubyte", ".idx1-ubyte", "-idx1-ubyte.gz", ".idx1-ubyte.gz")])
        if images and labels:
            return formats.read_idx(images, labels)
    elif domain.name == "svhn":
        mat = folder / f"{split}_32x32.mat"
        if mat.is_file():
            return formats.read_svhn_mat(mat)
    elif domain.name == "usps":
        h5 = _first_existing(folder, ["usps.h5"]) or _first_existing(data_dir, ["usps.h5"])
        if h5:
            return formats.read_usps_h5(h5, split)
    return None


def network_reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether `host` answers on port 443; checked before TFDS tries (and retries for minutes) a download.

    UNIT_OFFLINE=1 answers False without trying (air-gapped machines, hermetic tests).
    """
    if os.environ.get("UNIT_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _missing(domain: DigitDomain, data_dir: Path | None) -> UserError:
    where = f"{data_dir}/{domain.name}/" if data_dir else f"DIR/{domain.name}/ with --data-dir DIR"
    official = f" or the official files ({domain.raw_files})" if domain.raw_files else ""
    local = f"put {domain.name}/{{train,test}}.npz{official} in {where}"
    if domain.tfds_name is None:
        return UserError(f"data set '{domain.name}' not found: {local}; TFDS has no {domain.name} ({domain.obtain})")
    return UserError(
        f"data set '{domain.name}' not found and TFDS '{domain.tfds_name}' cannot be downloaded (no network): "
        f"either {local} (or set UNIT_DATA_DIR), or run once with network access so TFDS downloads it"
    )


def load_tfds(domain: DigitDomain, split: str, data_dir: Path | None) -> formats.Arrays:
    """Load a whole split from TFDS as numpy arrays, downloading it first if needed and possible."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(domain.tfds_name, data_dir=os.environ.get("TFDS_DATA_DIR"))
    if not builder.is_prepared():
        if domain.download_host and not network_reachable(domain.download_host):
            raise _missing(domain, data_dir)
        try:
            builder.download_and_prepare()
        except Exception as err:  # network, disk or checksum failures from TFDS internals
            raise UserError(f"TFDS could not prepare '{domain.tfds_name}' ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:200]}); provide local files instead") from None
    images, labels = [], []
    for x, y in tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True).batch(4096)):
        images.append(x)
        labels.append(y)
    source = Path(f"tfds:{domain.tfds_name}")
    if not images:
        raise UserError(f"TFDS '{domain.tfds_name}' split '{split}' is empty; re-prepare it or use local files")
    return formats.check_arrays(np.concatenate(images).astype(np.uint8), np.concatenate(labels), source)


def load_domain(name: str, split: str, data_dir: str | None = None) -> formats.Arrays:
    """Images (uint8, native size) and labels of one split of a digit domain, from the first source found."""
    if name not in DIGIT_DOMAINS:
        raise UserError(f"unknown digit domain '{name}'; choose one of: {', '.join(DIGIT_DOMAINS)}")
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    domain = DIGIT_DOMAINS[name]
    folder = data_dir_from_env(data_dir)
    if folder is not None:
        arrays = load_local(domain, split, folder)
        if arrays is not None:
            return arrays
    if domain.tfds_name is None:
        raise _missing(domain, folder)
    return load_tfds(domain, split, folder)


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased) resize of uint8 images to size x size, kept as uint8."""
    if x.shape[1] == size and x.shape[2] == size:
        return x
    import tensorflow as tf

    out = np.empty((len(x), size, size, x.shape[-1]), np.uint8)
    for start in range(0, len(x), 8192):  # chunks bound the float32 working memory
        chunk = tf.image.resize(tf.cast(x[start:start + 8192], tf.float32), (size, size), antialias=True)
        out[start:start + 8192] = np.clip(np.round(chunk.numpy()), 0, 255).astype(np.uint8)
    return out
