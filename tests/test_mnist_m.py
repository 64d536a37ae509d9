"""benchmarks/make_mnist_m.py on generated digits and photos: deterministic, |digit - patch| blends, splits kept
apart, and the mnist_mnistm pair reads what it writes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import load_benchmark, run_script, write_cycle_gan_folder, write_digit_dirs

from unit_tf.data.image_files import decode_image, list_images
from unit_tf.data.pipeline import load_pair
from unit_tf.errors import UserError

PATCH = 28


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Generated MNIST (28 x 28, 16 training and 8 test digits) and photos (32 x 38 JPEGs, 4 per folder), and
    MNIST-M built from them by the command line."""
    root = tmp_path_factory.mktemp("mnist_m")
    data_dir = write_digit_dirs(root / "data", n_train=16, n_test=8)
    photos = write_cycle_gan_folder(root / "photos", n_train=4, n_test=4, size=32)
    result = run_script("benchmarks/make_mnist_m.py", "--photos", str(photos), "--output",
                        str(data_dir / "mnist_m"), "--data-dir", str(data_dir), "--seed", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    return data_dir, photos, json.loads(result.stdout.strip().splitlines()[-1])


def _arrays(path):
    with np.load(path) as f:
        return f["x"], f["y"]


def _blend_sources(digit, photos):
    """Every (photo, top, left) whose patch blended with `digit` by numpy gives the image: the candidates."""
    def matches(image):
        return [(k, top, left) for k, photo in enumerate(photos)
                for top in range(photo.shape[0] - PATCH + 1) for left in range(photo.shape[1] - PATCH + 1)
                if np.array_equal(image, np.abs(digit.astype(int) - photo[top:top + PATCH, left:left + PATCH]))]
    return matches


def test_every_image_is_its_digit_blended_with_a_patch_of_its_own_split(made):
    data_dir, photos_root, report = made
    for split in ("train", "test"):
        x, y = _arrays(data_dir / "mnist_m" / f"{split}.npz")
        digits, labels = _arrays(data_dir / "mnist" / f"{split}.npz")
        assert x.shape == (len(digits), PATCH, PATCH, 3) and x.dtype == np.uint8
        np.testing.assert_array_equal(y, labels)  # image i is MNIST image i, with its label
        own = [decode_image(p, 3) for folder in (f"{split}A", f"{split}B") for p in list_images(photos_root / folder)]
        used = set()
        for image, digit in zip(x, digits, strict=True):
            found = _blend_sources(digit, own)(image)
            assert found, f"a {split} image is no |digit - patch| of a {split} photo"
            used.add(found[0][0])
        assert len(used) > 1  # patches come from several photos
        assert report[split]["images"] == len(x) and report[split]["bytes"] > 0
    assert (data_dir / "mnist_m" / "samples.png").stat().st_size > 0


def test_same_seed_same_arrays_other_seed_other_patches(made, tmp_path):
    data_dir, photos_root, report = made
    module = load_benchmark("make_mnist_m")
    again = module.build(photos_root, tmp_path / "again", str(data_dir), seed=3)
    other = module.build(photos_root, tmp_path / "other", str(data_dir), seed=4)
    for split in ("train", "test"):
        assert again[split]["x_sha256"] == report[split]["x_sha256"]
        np.testing.assert_array_equal(_arrays(tmp_path / "again" / f"{split}.npz")[0],
                                      _arrays(data_dir / "mnist_m" / f"{split}.npz")[0])
        assert other[split]["x_sha256"] != report[split]["x_sha256"]


def test_blend_is_the_absolute_difference():
    blend = load_benchmark("make_mnist_m").blend
    digit = np.array([[[[0], [255], [100]]]], np.uint8)
    patch = np.array([[[[10, 200, 255], [0, 255, 100], [100, 50, 250]]]], np.uint8)
    np.testing.assert_array_equal(blend(digit, patch), [[[[10, 200, 255], [255, 0, 155], [0, 50, 150]]]])


def test_the_mnist_mnistm_pair_reads_it(made):
    data_dir, _, _ = made
    a, b = load_pair("mnist_mnistm", "test", str(data_dir), 32)
    assert a.images.shape[1:] == (32, 32, 1) and b.images.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_the_mnist_mnistm_pair_adds_inverted_mnist_unless_told_not_to():
    from unit_tf.config import resolve_config

    assert resolve_config("mnist_mnistm", "digits_da_small").data.invert_a
    assert not resolve_config("mnist_usps", "digits_da_small").data.invert_a
    assert not resolve_config("mnist_mnistm", "digits_da_small", overrides={"data.invert_a": False}).data.invert_a


@pytest.mark.parametrize("script", ["domain_adaptation", "source_only"])
def test_whole_budget_baseline_trains_on_what_the_warm_up_trains_on(made, script, monkeypatch, capsys):
    """The whole-budget source-only baseline (domain_adaptation.py --seeds, source_only.py) gets the warm-up's
    training images: MNIST and its inverted copies."""
    from unit_tf import adaptation, model
    from unit_tf.config import resolve_config
    from unit_tf.data.sources import load_run_data

    data_dir, _, _ = made
    config = resolve_config("mnist_mnistm", "digits_da_small", overrides={"data.data_dir": str(data_dir)})
    warm_up = load_run_data(config, 4).train_a
    assert len(warm_up.images) == 2 * len(load_pair("mnist_mnistm", "train", str(data_dir), 32)[0].images)
    trained = []

    def train_source_only_for(unit, train_a, *args, **kwargs):
        trained.append(train_a)
        return [{"step": 1, "source_accuracy": 0.5, "target_accuracy": 0.5}]

    monkeypatch.setattr(adaptation, "train_source_only_for", train_source_only_for)
    monkeypatch.setattr(model, "build_model", lambda config: None)
    bench = load_benchmark(script)
    if script == "source_only":
        assert bench.main(["--pair", "mnist_mnistm", "--minutes", "1", "--data-dir", str(data_dir)]) == 0
        assert json.loads(capsys.readouterr().out)["source_only_accuracy"] == 0.5
    else:
        assert bench.whole_budget_baseline(config, 1.0)["source_only_whole_budget_accuracy"] == 0.5
    np.testing.assert_array_equal(trained[0].images, warm_up.images)
    np.testing.assert_array_equal(trained[0].labels, warm_up.labels)


def test_missing_mnist_m_names_the_command(tmp_path):
    write_digit_dirs(tmp_path, n_train=8, n_test=8)
    with pytest.raises(UserError, match="make_mnist_m.py"):
        load_pair("mnist_mnistm", "train", str(tmp_path), 32)


def test_a_photo_in_both_splits_is_refused(made, tmp_path):
    data_dir, photos_root, _ = made
    shutil.copytree(photos_root, tmp_path / "photos")
    shutil.copy(next((tmp_path / "photos" / "trainA").iterdir()), tmp_path / "photos" / "testB" / "copy.jpg")
    with pytest.raises(UserError, match="both training and test photos"):
        load_benchmark("make_mnist_m").build(tmp_path / "photos", tmp_path / "out", str(data_dir), seed=0)
