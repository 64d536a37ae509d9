"""Loaders for every supported file format, the TFDS path (mocked), errors, and the tf.data pipeline."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds
from helpers import ROOT, synthetic_digits

from unit_tf.data import digits, formats
from unit_tf.data.digits import load_domain, resize_images
from unit_tf.data.pipeline import DomainData, load_pair, unpaired_batches
from unit_tf.errors import UserError


def _write_idx(folder, prefix, x, y, gz):
    suffix = ".gz" if gz else ""
    images = struct.pack(">IIII", 0x803, len(x), *x.shape[1:3]) + x.tobytes()
    labels = struct.pack(">II", 0x801, len(y)) + y.astype(np.uint8).tobytes()
    for name, raw in ((f"{prefix}-images-idx3-ubyte{suffix}", images), (f"{prefix}-labels-idx1-ubyte{suffix}", labels)):
        (folder / name).write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files(tmp_path, gz):
    x, y = synthetic_digits(20, 28, 1, seed=0)
    (tmp_path / "mnist").mkdir()
    _write_idx(tmp_path / "mnist", "t10k", x[..., 0], y, gz)
    got_x, got_y = load_domain("mnist", "test", str(tmp_path))
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)


def test_svhn_mat_official_layout(tmp_path):
    x, y = synthetic_digits(12, 32, 3, seed=1)
    mat_y = np.where(y == 0, 10, y).reshape(-1, 1)  # the official files store digit 0 as label 10
    (tmp_path / "svhn").mkdir()
    scipy.io.savemat(tmp_path / "svhn" / "train_32x32.mat", {"X": np.transpose(x, (1, 2, 3, 0)), "y": mat_y})
    got_x, got_y = load_domain("svhn", "train", str(tmp_path))
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)


def test_usps_h5(tmp_path):
    x, y = synthetic_digits(15, 16, 1, seed=2)
    (tmp_path / "usps").mkdir()
    with h5py.File(tmp_path / "usps" / "usps.h5", "w") as f:
        for split in ("train", "test"):
            f.create_dataset(f"{split}/data", data=x.reshape(15, 256).astype(np.float32) / 255.0)
            f.create_dataset(f"{split}/target", data=y.astype(np.int32))
    got_x, got_y = load_domain("usps", "train", str(tmp_path))
    assert got_x.shape == (15, 16, 16, 1) and got_x.dtype == np.uint8
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)


def test_npz_takes_precedence_and_env_variable(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("UNIT_DATA_DIR", str(data_dir))
    x, y = load_domain("usps", "train")
    assert x.shape == (64, 16, 16, 1) and y.shape == (64,)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_keys"])
def test_corrupt_npz_is_a_clear_error(tmp_path, damage):
    (tmp_path / "mnist").mkdir()
    path = tmp_path / "mnist" / "train.npz"
    x, y = synthetic_digits(10, 28, 1)
    if damage == "wrong_keys":
        np.savez(path, images=x, labels=y)
    else:
        np.savez(path, x=x, y=y)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not a zip file at all")
    with pytest.raises(UserError, match="train.npz"):
        load_domain("mnist", "train", str(tmp_path))


def test_truncated_idx_is_a_clear_error(tmp_path):
    x, y = synthetic_digits(10, 28, 1)
    (tmp_path / "mnist").mkdir()
    _write_idx(tmp_path / "mnist", "train", x[..., 0], y, gz=False)
    images = tmp_path / "mnist" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-7])
    with pytest.raises(UserError, match="train-images"):
        formats.read_idx(images, tmp_path / "mnist" / "train-labels-idx1-ubyte")


def test_usps_without_files_names_usps_h5(tmp_path):
    with pytest.raises(UserError, match="usps.h5"):
        load_domain("usps", "train", str(tmp_path))


def test_offline_without_files_names_both_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(digits, "network_reachable", lambda host, timeout=3.0: False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    with pytest.raises(UserError) as err:
        load_domain("svhn", "train", None)
    message = str(err.value)
    assert "svhn" in message and "--data-dir" in message and "TFDS" in message


def test_unresolvable_host_is_unreachable():
    assert not digits.network_reachable("unit-tf-test.invalid", timeout=2.0)


def test_tfds_path_with_mock_data(monkeypatch):
    monkeypatch.setattr(digits, "network_reachable", lambda host, timeout=3.0: True)
    with tfds.testing.mock_data(num_examples=24):
        x, y = load_domain("svhn", "train", None)
        m_x, _ = load_domain("mnist", "test", None)
    assert x.shape == (24, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (24,)
    assert m_x.shape == (24, 28, 28, 1)


def test_load_pair_resizes_to_32(data_dir):
    a, b = load_pair("mnist_usps", "train", str(data_dir), 32)
    assert a.images.shape[1:] == (32, 32, 1) and b.images.shape[1:] == (32, 32, 1)
    c, _ = load_pair("svhn_mnist", "test", str(data_dir), 32)
    assert c.images.shape[1:] == (32, 32, 3)


def test_resize_keeps_uint8_range():
    x = np.full((3, 16, 16, 1), 255, np.uint8)
    y = resize_images(x, 32)
    assert y.shape == (3, 32, 32, 1) and y.dtype == np.uint8 and y.min() == 255


def test_pipeline_is_unpaired_shuffled_and_scaled():
    n = 40
    # Identical arrays in both domains, each image filled with its index: pairing would show as equal batches.
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None], 32, axis=1).repeat(32, axis=2)
    domain = DomainData("d", images, np.zeros(n, np.int64))
    ds = unpaired_batches(domain, domain, batch_size=8, seed=3)
    batches = list(ds.take(10).as_numpy_iterator())
    first = batches[0]
    assert first["x_a"].shape == (8, 32, 32, 1) and first["x_a"].dtype == np.float32
    assert first["x_a"].min() >= -1.0 and first["x_a"].max() <= 1.0
    ids_a = [np.round((b["x_a"][:, 0, 0, 0] + 1) * 127.5).astype(int) for b in batches]
    ids_b = [np.round((b["x_b"][:, 0, 0, 0] + 1) * 127.5).astype(int) for b in batches]
    assert not all(np.array_equal(a, b) for a, b in zip(ids_a, ids_b, strict=True))
    assert sorted(np.concatenate(ids_a[:5])) == list(range(n))  # one epoch = every image once
    assert not np.array_equal(np.concatenate(ids_a[:5]), np.arange(n))  # ... in shuffled order


def test_batch_larger_than_domain_is_refused():
    domain = DomainData("d", np.zeros((4, 32, 32, 1), np.uint8), np.zeros(4, np.int64))
    with pytest.raises(UserError, match="batch size"):
        unpaired_batches(domain, domain, batch_size=8, seed=0)


def test_config_loads_no_data_layer():
    """The config reads the data-set catalogue, never the data layer (which imports the config)."""
    code = "import sys, unit_tf.config; print([m for m in sys.modules if m.startswith('unit_tf.data')])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
