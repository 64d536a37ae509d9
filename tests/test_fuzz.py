"""Property-based tests: any flags and any damaged data file end in a clean error or a valid result."""

from __future__ import annotations

import gzip
import shutil
import struct
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from helpers import synthetic_digits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import train as train_cli
from unit_tf.config import valid_keys
from unit_tf.data.digits import load_domain
from unit_tf.errors import UserError
from unit_tf.networks import build_networks

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
plausible = st.one_of(
    st.integers(-3, 70).map(str),
    st.floats(-2, 2, allow_nan=False).map(repr),
    st.sampled_from(["true", "false", "none", "1e-3", "0", "-1", "inf", "nan", "digits", "l2", "mirrored"]),
)
values = st.one_of(plausible, plausible, text)
setting = st.builds(lambda k, v: f"{k}={v}", st.one_of(st.sampled_from(valid_keys()), st.sampled_from(valid_keys()),
                                                     text), values)
flag = st.tuples(st.sampled_from(["--dataset", "--preset", "--steps", "--batch-size", "--seed", "--checkpoint-every",
                                  "--sample-every", "--log-every", "--strategy", "--on-nan", "--image-size",
                                  "--domain-a", "--domain-b", "--attribute", "--source", "--target", "--target-test",
                                  "--channels"]),
                 st.one_of(plausible, st.sampled_from(["svhn_mnist", "mnist_usps", "digits_small", "skip-step", "small",
                                                       "translation_128", "folders", "folder:", "celeb_a",
                                                       "cycle_gan/horse2zebra", "Blond_Hair", ".", "da:", "da:.,.",
                                                       "da:docs,tests", "3"])))
argv = st.lists(
    st.one_of(st.tuples(st.just("--set"), setting), st.tuples(st.just("--set"), setting), flag,
              st.tuples(st.sampled_from(["--set", "--bogus"]), text)),
    max_size=6,
).map(lambda pairs: [item for pair in pairs for item in pair])


@FUZZ
@given(argv)
def test_any_flags_give_a_config_or_a_clean_error(args):
    try:
        config = train_cli.make_config(train_cli.parse_args(args))
        build_networks(config.model)  # sharing counts, sizes and widths are checked here
    except UserError as err:
        assert str(err) and "\n" not in str(err)
    except SystemExit as exit_:  # argparse: one line, exit code 2
        assert exit_.code == 2


def _valid_files(root: Path) -> dict[str, tuple[str, Path]]:
    """One valid file per supported format, as (domain, path)."""
    x, y = synthetic_digits(6, 28, 1, seed=0)
    (root / "mnist").mkdir(parents=True)
    images = struct.pack(">IIII", 0x803, 6, 28, 28) + x.tobytes()
    labels = struct.pack(">II", 0x801, 6) + y.astype(np.uint8).tobytes()
    (root / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (root / "mnist" / "train-labels-idx1-ubyte").write_bytes(labels)
    np.savez_compressed(root / "mnist" / "test.npz", x=x, y=y)
    sx, sy = synthetic_digits(6, 32, 3, seed=1)
    (root / "svhn").mkdir()
    scipy.io.savemat(root / "svhn" / "train_32x32.mat", {"X": np.transpose(sx, (1, 2, 3, 0)), "y": sy[:, None]})
    ux, uy = synthetic_digits(6, 16, 1, seed=2)
    (root / "usps").mkdir()
    with h5py.File(root / "usps" / "usps.h5", "w") as f:
        for split in ("train", "test"):
            f.create_dataset(f"{split}/data", data=ux.reshape(6, 256) / 255.0)
            f.create_dataset(f"{split}/target", data=uy)
    return {
        "npz": ("mnist", "test", root / "mnist" / "test.npz"),
        "idx.gz": ("mnist", "train", root / "mnist" / "train-images-idx3-ubyte.gz"),
        "idx": ("mnist", "train", root / "mnist" / "train-labels-idx1-ubyte"),
        "mat": ("svhn", "train", root / "svhn" / "train_32x32.mat"),
        "h5": ("usps", "train", root / "usps" / "usps.h5"),
    }


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    return root, _valid_files(root)


@FUZZ
@given(fmt=st.sampled_from(["npz", "idx.gz", "idx", "mat", "h5"]), cut=st.floats(0, 1),
       flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=8))
def test_damaged_files_give_valid_data_or_a_clean_error(pristine, fmt, cut, flips):
    root, files = pristine
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "data"
        shutil.copytree(root, work)
        domain, split, path = files[fmt]
        path = work / path.relative_to(root)
        raw = bytearray(path.read_bytes())
        for where, byte in flips:
            raw[int(where * (len(raw) - 1))] = byte
        path.write_bytes(bytes(raw[: max(1, int(len(raw) * cut))] if cut < 1 else raw))
        try:
            x, y = load_domain(domain, split, str(work))
        except UserError as err:
            assert str(err) and "\n" not in str(err)
            return
        assert x.dtype == np.uint8 and x.ndim == 4 and len(x) == len(y) and y.min() >= 0 and y.max() <= 9


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory):
    """Two folders of four small images each, one per format."""
    from PIL import Image

    root = tmp_path_factory.mktemp("image_folders")
    rng = np.random.default_rng(0)
    for domain in ("A", "B"):
        (root / domain).mkdir()
        for i, fmt in enumerate(("png", "jpg", "bmp", "webp")):
            Image.fromarray(rng.integers(0, 256, (12 + i, 14, 3), dtype=np.uint8)).save(root / domain / f"{i}.{fmt}")
    return root


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(damaged=st.lists(st.tuples(st.integers(0, 3), st.floats(0, 1),
                                  st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6)),
                        min_size=1, max_size=4))
def test_damaged_images_in_a_folder_are_skipped_or_a_clean_error(image_folders, damaged):
    """Any truncated or overwritten image files: the readable ones train, the others are skipped (a warning);
    a folder with too few readable images is one clean error, never a traceback."""
    from unit_tf.data.image_domains import load_image_pair

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(image_folders, work, dirs_exist_ok=True)
        for index, cut, flips in damaged:
            path = sorted((work / "A").iterdir())[index]
            raw = bytearray(path.read_bytes())
            for where, byte in flips if raw else []:  # an earlier cut may have emptied the file
                raw[int(where * (len(raw) - 1))] = byte
            path.write_bytes(bytes(raw[: int(len(raw) * cut)] if cut < 1 else raw))
        try:
            pair = load_image_pair("folders", 8, str(work / "A"), str(work / "B"))
            batch = next(iter(pair.batches(2, seed=0)))
        except UserError as err:
            assert str(err) and "\n" not in str(err)
            return
        assert batch["x_a"].shape == (2, 8, 8, 3) and np.isfinite(batch["x_a"].numpy()).all()
        assert 2 <= pair.num_train("a") <= 4
