"""Image-folder and TFDS translation domains: scanning, decoding, preprocessing, determinism and errors (offline)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from unit_tf.catalogue import check_image_dataset, is_image_dataset
from unit_tf.data import digits
from unit_tf.data.image_domains import check_tfds_names, decode_rgb, load_image_pair, square
from unit_tf.data.image_files import IMAGE_EXTENSIONS, decode_image, list_images
from unit_tf.errors import UserError

SIZE = 32


def _save(path: Path, array: np.ndarray, mode: str, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert(mode).save(path, format=fmt)


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _corrupt(folder: Path) -> None:
    """A random-bytes "png", a truncated jpg and a text file (not an image extension: never listed)."""
    (folder / "x.png").write_bytes(np.random.default_rng(9).integers(0, 256, 500, dtype=np.uint8).tobytes())
    buffer = io.BytesIO()
    Image.fromarray(_noise(40, 40, 8)).save(buffer, format="JPEG")
    (folder / "sub" / "t.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "notes.txt").write_text("not an image")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """domain A: five readable images in mixed formats, modes, sizes and folders, plus three bad files;
    domain B: six pure-red images."""
    a = tmp_path_factory.mktemp("horses")
    _save(a / "a0.png", _noise(20, 30, 0), "RGB")
    _save(a / "a1.jpg", _noise(40, 40, 1), "L")
    _save(a / "sub" / "a2.bmp", _noise(64, 48, 2), "P")
    _save(a / "sub" / "deep" / "a3.webp", _noise(40, 40, 3), "RGBA")
    _save(a / "A4.PNG", _noise(48, 64, 4), "P", "PNG")
    _corrupt(a)
    b = tmp_path_factory.mktemp("apples")
    red = np.zeros((40, 50, 3), np.uint8)
    red[..., 0] = 255
    for i, (fmt, mode) in enumerate([("png", "RGB"), ("jpg", "RGB"), ("bmp", "RGB"), ("webp", "RGB"),
                                     ("gif", "P"), ("png", "RGBA")]):
        _save(b / f"r{i}.{fmt}", red, mode)
    return a, b


@pytest.fixture(scope="module")
def pair(folders):
    a, b = folders
    return load_image_pair("folders", SIZE, str(a), str(b))


def _take(ds: tf.data.Dataset, n: int) -> list[dict]:
    return list(ds.take(n).as_numpy_iterator())


def test_is_image_dataset_and_extensions():
    assert all(is_image_dataset(d) for d in ("folders", "folder:/x", "cycle_gan/horse2zebra", "celeb_a"))
    assert not is_image_dataset("svhn_mnist")
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"} <= set(IMAGE_EXTENSIONS)


def test_list_images_recursive_sorted(folders):
    a, _ = folders
    names = [p.relative_to(a).as_posix() for p in list_images(a)]
    assert names == ["A4.PNG", "a0.png", "a1.jpg", "sub/a2.bmp", "sub/deep/a3.webp", "sub/t.jpg", "x.png"]


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("P", "BMP"), ("L", "BMP"),
                                      ("RGB", "BMP"), ("RGBA", "BMP"), ("P", "GIF"), ("RGBA", "WEBP")])
def test_decode_rgb_matches_pillow(mode, fmt):
    image = Image.fromarray(_noise(13, 17, 5)).convert(mode)
    buffer = io.BytesIO()
    save = {"lossless": True} if fmt == "WEBP" else {}
    image.save(buffer, format=fmt, **save)
    got = decode_rgb(tf.constant(buffer.getvalue())).numpy()
    want = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(got, want)  # 8-bit BMP palettes included (TF alone returns the indices)


def test_square_resizes_shorter_side_and_centre_crops():
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, 6:34] = 200  # 20x40 -> 10x20: columns 3..17, wider than the centre crop (5..15)
    out = square(tf.constant(image), 10).numpy()
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    assert out.min() == 200
    tall = square(tf.constant(np.transpose(image, (1, 0, 2))), 10).numpy()
    np.testing.assert_array_equal(tall, np.transpose(out, (1, 0, 2)))


def test_unreadable_files_are_skipped_with_one_warning(folders, capfd):
    a, b = folders
    pair = load_image_pair("folders", SIZE, str(a), str(b))
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"warning: skipped 2 unreadable image(s) in {a}: ")
    assert "x.png" in warnings[0] and "sub/t.jpg" in warnings[0]
    assert pair.num_train("a") == 5 and pair.num_train("b") == 6
    assert (pair.name_a, pair.name_b) == (a.name, b.name)


def test_train_batches_shape_and_range(pair):
    batch = _take(pair.batches(batch_size=3, seed=0), 1)[0]
    for key in ("x_a", "x_b"):
        assert batch[key].shape == (3, SIZE, SIZE, 3) and batch[key].dtype == np.float32
        assert batch[key].min() >= -1.0 and batch[key].max() <= 1.0


def test_red_folder_is_red_in_model_range(pair):
    x_b = np.concatenate([b["x_b"] for b in _take(pair.batches(batch_size=3, seed=1), 4)])
    assert np.abs(x_b[..., 0] - 1.0).max() < 0.05  # jpg and lossy webp: a few levels off
    assert np.abs(x_b[..., 1:] + 1.0).max() < 0.05


@pytest.mark.parametrize("cache_mb", [2048, 0])  # in memory / decoded per step
def test_stream_is_a_function_of_seed_and_step(folders, pair, cache_mb):
    a, b = folders
    source = pair if cache_mb else load_image_pair("folders", SIZE, str(a), str(b), cache_mb=0)
    assert (source._a.table is None) == (cache_mb == 0)
    full = _take(source.batches(batch_size=2, seed=5), 6)
    again = _take(source.batches(batch_size=2, seed=5), 6)
    resumed = _take(source.batches(batch_size=2, seed=5, start_step=4), 2)
    other = _take(source.batches(batch_size=2, seed=6), 6)
    for key in ("x_a", "x_b"):
        np.testing.assert_array_equal(np.stack([f[key] for f in full]), np.stack([g[key] for g in again]))
        np.testing.assert_array_equal(np.stack([f[key] for f in full[4:]]), np.stack([r[key] for r in resumed]))
    assert not np.array_equal(np.stack([f["x_a"] for f in full]), np.stack([o["x_a"] for o in other]))
    if cache_mb == 0:  # the streamed and the in-memory paths give the same images
        cached = _take(pair.batches(batch_size=2, seed=5), 6)
        np.testing.assert_allclose(np.stack([c["x_a"] for c in cached]), np.stack([f["x_a"] for f in full]))


def test_each_epoch_visits_every_image_once(tmp_path):
    """Five flat images, batches of two: batches straddle epochs; each epoch is a permutation."""
    for d in ("a", "b"):
        for i in range(5):
            _save(tmp_path / d / f"{i}.png", np.full((SIZE, SIZE, 3), 40 * i, np.uint8), "RGB")
    pair = load_image_pair("folders", SIZE, str(tmp_path / "a"), str(tmp_path / "b"), load_size=SIZE)
    batches = _take(pair.batches(batch_size=2, seed=3), 10)
    ids = np.concatenate([np.round((b["x_a"][:, 0, 0, 0] + 1) * 127.5 / 40) for b in batches]).astype(int)
    for epoch in range(4):
        assert sorted(ids[5 * epoch: 5 * epoch + 5]) == [0, 1, 2, 3, 4]
    assert list(ids[:5]) != list(ids[5:10])
    ids_b = np.concatenate([np.round((b["x_b"][:, 0, 0, 0] + 1) * 127.5 / 40) for b in batches]).astype(int)
    assert not np.array_equal(ids, ids_b)  # each domain has its own order


def test_test_images_are_deterministic_uint8(pair):
    first = pair.test_images("a")
    assert first.shape == (5, SIZE, SIZE, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(pair.test_images("a", limit=2), first[:2])
    np.testing.assert_array_equal(pair.test_images("a"), first)
    assert pair.test_images("b").shape == (6, SIZE, SIZE, 3)


def test_distributed_over_two_replicas(pair):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    batch = next(iter(strategy.experimental_distribute_dataset(pair.batches(batch_size=4, seed=0))))
    shards = strategy.experimental_local_results(batch["x_a"])
    assert [s.shape for s in shards] == [(2, SIZE, SIZE, 3)] * 2


def test_missing_empty_and_unreadable_folders(tmp_path, folders):
    _, good = folders
    with pytest.raises(UserError, match="missing"):
        load_image_pair("folders", SIZE, str(tmp_path / "missing"), str(good))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(UserError, match="empty.*no image files"):
        load_image_pair("folders", SIZE, str(good), str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    (bad / "sub").mkdir(parents=True)
    _corrupt(bad)
    with pytest.raises(UserError, match="bad.*no readable image"):
        load_image_pair("folders", SIZE, str(bad), str(good))


def test_batch_larger_than_folder(pair, folders):
    with pytest.raises(UserError, match=f"{folders[0]}.*only 5 .*--batch-size"):
        pair.batches(batch_size=6, seed=0)


def test_argument_checks(folders):
    a, b = folders
    with pytest.raises(UserError, match="--domain-b"):
        check_image_dataset("folders", str(a), None, None)
    with pytest.raises(UserError, match="--attribute only applies"):
        check_image_dataset("folders", str(a), str(b), "Smiling")
    with pytest.raises(UserError, match="only apply to dataset 'folders'"):
        check_image_dataset("cycle_gan/horse2zebra", str(a), None, None)
    with pytest.raises(UserError, match="unknown CycleGAN data set 'horse2giraffe'.*horse2zebra"):
        check_tfds_names("cycle_gan/horse2giraffe", None)
    with pytest.raises(UserError, match="unknown CycleGAN data set 'horse2giraffe'.*horse2zebra"):
        load_image_pair("cycle_gan/horse2giraffe", SIZE)  # checked before TFDS prepares anything
    with pytest.raises(UserError, match="needs --attribute"):
        check_image_dataset("celeb_a", None, None, None)
    with pytest.raises(UserError, match="load_size"):
        load_image_pair("folders", SIZE, str(a), str(b), load_size=SIZE - 1)


@pytest.mark.parametrize("with_test", [True, False])
def test_cyclegan_folder_layout(tmp_path, with_test):
    root = tmp_path / "summer2winter"
    for split, n in (("train", 3), ("test", 2)):
        if split == "test" and not with_test:
            continue
        for side, value in (("A", 50), ("B", 200)):
            for i in range(n):
                _save(root / f"{split}{side}" / f"{i}.jpg", np.full((36, 40, 3), value + (split == "test"), np.uint8),
                      "RGB")
    pair = load_image_pair(f"folder:{root}", SIZE)
    assert (pair.name_a, pair.name_b) == ("summer", "winter")
    assert pair.num_train("a") == 3 and pair.num_train("b") == 3
    test_a = pair.test_images("a")
    assert test_a.shape == ((2 if with_test else 3), SIZE, SIZE, 3)
    assert abs(int(np.median(test_a)) - (51 if with_test else 50)) <= 1
    train, test = pair.train_and_test_images("a", limit=2)  # evaluation: each folder decoded once
    np.testing.assert_array_equal(train, pair.train_images("a"))
    np.testing.assert_array_equal(test, pair.test_images("a", limit=2))
    assert _take(pair.batches(batch_size=3, seed=0), 1)[0]["x_b"].shape == (3, SIZE, SIZE, 3)
    with pytest.raises(UserError, match="trainB"):
        check_image_dataset(f"folder:{tmp_path / 'nowhere'}", None, None, None)


@pytest.fixture
def tfds_online(monkeypatch):
    """The mock makes download_and_prepare a no-op; pretend the download host answers."""
    monkeypatch.setattr(digits, "network_reachable", lambda host, timeout=3.0: True)


@pytest.mark.parametrize("cache_mb", [2048, 0])  # materialized / streamed from TFDS
def test_cycle_gan_tfds_mock(tfds_online, cache_mb):
    with tfds.testing.mock_data(num_examples=6):
        pair = load_image_pair("cycle_gan/horse2zebra", SIZE, cache_mb=cache_mb)
        assert (pair.name_a, pair.name_b) == ("horse", "zebra")
        assert pair.num_train("a") == 6 and pair.num_train("b") == 6
        assert (pair._a.table is None) == (cache_mb == 0)
        batches = _take(pair.batches(batch_size=4, seed=0), 3)
        test_b = pair.test_images("b", limit=4)
    assert batches[2]["x_a"].shape == (4, SIZE, SIZE, 3) and batches[2]["x_a"].dtype == np.float32
    assert -1.0 <= batches[2]["x_b"].min() and batches[2]["x_b"].max() <= 1.0
    assert test_b.shape == (4, SIZE, SIZE, 3) and test_b.dtype == np.uint8


def test_celeb_a_tfds_mock_splits_by_attribute(tfds_online):
    with tfds.testing.mock_data(num_examples=12):
        pair = load_image_pair("celeb_a", SIZE, attribute="Blond_Hair")
        # Encoded like the loader reads them (the mock only jpg-encodes when a decoder is given).
        reference = tfds.builder("celeb_a").as_dataset(split="test", decoders={"image": tfds.decode.SkipDecoding()})
        blond = [decode_image(ex["image"].numpy()) for ex in reference if ex["attributes"]["Blond_Hair"]]
        test_a = pair.test_images("a")
        batch = _take(pair.batches(batch_size=2, seed=0), 1)[0]
    n_blond = len(blond)
    assert 0 < n_blond < 12  # the mock draws each boolean attribute at random
    assert (pair.name_a, pair.name_b) == ("Blond_Hair", "no_Blond_Hair")
    assert pair.num_train("a") == n_blond and pair.num_train("b") == 12 - n_blond
    assert test_a.shape == (n_blond, SIZE, SIZE, 3)
    np.testing.assert_array_equal(test_a, np.stack([square(x, SIZE).numpy() for x in blond]))
    assert batch["x_a"].shape == (2, SIZE, SIZE, 3)


def test_celeb_a_attribute_errors(tfds_online):
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(UserError, match="unknown CelebA attribute 'Blonde'.*Blond_Hair"):
            load_image_pair("celeb_a", SIZE, attribute="Blonde")
        with pytest.raises(UserError, match="needs --attribute"):
            load_image_pair("celeb_a", SIZE)


def test_tfds_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIT_OFFLINE", "1")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    with pytest.raises(UserError, match="cycle_gan/horse2zebra.*not prepared.*no network.*folder:ROOT"):
        load_image_pair("cycle_gan/horse2zebra", SIZE)
