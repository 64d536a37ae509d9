"""Translation on image folders as a user runs it: train.py --domain-a/--domain-b, evaluate.py, the translate
command, the served export, the preset chosen by --image-size, and one clear line for every bad flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY_TRANSLATION, run_script
from PIL import Image
from test_cli import _assert_clean_error

import train
from unit_tf import translate
from unit_tf.config import UNITConfig, resolve_config
from unit_tf.errors import UserError

SIZE = 16


def _write_images(folder, seed: int, n: int = 10):
    """n small RGB images of mixed formats and sizes (one in a nested folder) and one corrupt file."""
    rng = np.random.default_rng(seed)
    (folder / "nested").mkdir(parents=True)
    for i in range(n):
        pixels = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
        target = folder / "nested" if i == 0 else folder
        Image.fromarray(pixels).save(target / f"img{i}.{'jpg' if i % 2 else 'png'}")
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return _write_images(root / "day", 0), _write_images(root / "night", 1)


def _flags():
    settings = {k: v for k, v in TINY_TRANSLATION.items() if k != "model.image_size"}
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="module")
def folder_run(folders, tmp_path_factory):
    day, night = folders
    root = tmp_path_factory.mktemp("runs")
    result = run_script("train.py", "--domain-a", str(day), "--domain-b", str(night), "--image-size", str(SIZE),
                        "--steps", "4", "--output-dir", str(root / "R"), "--export-dir", str(root / "saved"),
                        *_flags())
    assert result.returncode == 0, result.stderr
    return root / "R", root / "saved", result


def test_folder_run_trains_the_small_preset_and_skips_corrupt_images(folder_run, folders):
    run, _, result = folder_run
    config = UNITConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert config.data.dataset == "folders" and config.preset == "small"  # chosen by --image-size 16
    assert config.data.domain_a == str(folders[0].resolve()) and config.model.image_size == SIZE
    assert config.model.architecture == "residual" and config.model.channels_a == config.model.channels_b == 3
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("broken.png" in line for line in warnings)  # one per domain
    assert (run / "samples" / "step_4.png").is_file()
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"recon_l1", "cycle_l1", "kl", "cycle_kl", "g_gan", "d_gan"} <= set(header)


def test_served_export_translates_at_the_training_size(folder_run):
    _, saved, _ = folder_run
    (version,) = (saved / "R").iterdir()
    loaded = tf.saved_model.load(str(version))
    out = loaded.signatures["a_to_b"](images=tf.zeros([2, SIZE, SIZE, 3]))["images"]
    assert out.shape == (2, SIZE, SIZE, 3) and 0.0 <= float(tf.reduce_min(out)) <= float(tf.reduce_max(out)) <= 1.0
    wide = loaded.signatures["a_to_b"](images=tf.zeros([1, 18, 27, 3]))["images"]  # residual: any H x W
    assert wide.shape == (1, 18, 27, 3)


def test_evaluate_reports_errors_and_writes_grid_and_interpolation(folder_run):
    run, _, _ = folder_run
    result = run_script("evaluate.py", "--run-dir", str(run))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("recon_l1_a", "recon_l1_b", "cycle_l1_a", "cycle_l1_b"):
        assert 0.0 <= report[key] <= 1.0
    assert report["num_images_a"] == 10 and report["dataset"] == "folders"  # the folder's own readable images
    strip = tf.io.decode_png(tf.io.read_file(report["interpolation"]))
    assert strip.shape == (2 * (SIZE + 2) + 2, 8 * (SIZE + 2) + 2, 3)  # G_a and G_b rows, 8 latent codes
    assert (run / "eval" / "translations_test_step_4.png").is_file()
    # The photo metrics: offline (tests), KID on the judge's features under their own names.
    assert report["kid_features"] == "judge" and "kid_judge_a2b" in report and "kid_a2b" not in report
    assert 0.0 <= report["translation_success_a2b"] <= 1.0 and 0.0 <= report["judge_accuracy"] <= 1.0


def test_evaluate_saved_model_measures_the_export_as_the_run(folder_run):
    run, saved, _ = folder_run
    reports = []
    for flags in (["--run-dir", str(run)], ["--saved-model", str(saved / "R")]):
        result = run_script("evaluate.py", *flags)
        assert result.returncode == 0, result.stderr
        reports.append(json.loads(result.stdout.strip().splitlines()[-1]))
    by_run, by_export = reports
    for key in ("recon_l1_a", "recon_l1_b", "cycle_l1_a", "cycle_l1_b", "kid_judge_a2b", "kid_judge_b2a"):
        assert by_export[key] == pytest.approx(by_run[key], abs=1e-4), key
    for key in ("judge_accuracy", "translation_success_a2b", "translation_success_b2a", "identity_success_a2b"):
        assert by_export[key] == by_run[key], key
    result = run_script("evaluate.py", "--saved-model", str(saved / "R"), "--step", "2")
    _assert_clean_error(result, "--step needs --run-dir")


def test_translate_command_on_a_folder(folder_run, folders, tmp_path):
    run, _, _ = folder_run
    result = run_script("-m", "unit_tf.translate", "--run-dir", str(run), "--direction", "b2a", "--input",
                        str(folders[1]), "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "Translated 10 images (b -> a)" in result.stdout
    with Image.open(tmp_path / "out" / "nested" / "img0.png") as image:
        assert image.size == (24, 20)  # written at the input's size


def test_translate_command_keeps_a_photos_aspect_ratio(folder_run, tmp_path):
    run, _, _ = folder_run
    rows, cols = np.mgrid[0:60, 0:90]
    photo = np.stack([cols * 2.8, rows * 4.2, 128 + 100 * np.sin(cols / 7 + rows / 5)], -1).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "wide.png")
    base = ["--run-dir", str(run), "--direction", "a2b", "--input", str(tmp_path / "wide.png")]
    result = run_script("-m", "unit_tf.translate", *base, "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "out" / "wide.png") as image:
        assert image.size == (90, 60)  # the input's own size, not squashed through a square
    # --size model: translated with the shorter side at the training scale (load_size 0: 16 * 286 / 256 = 18)
    assert translate.main([*base, "--output", str(tmp_path / "model"), "--size", "model"]) == 0
    with Image.open(tmp_path / "model" / "wide.png") as image:
        assert image.size == (27, 18)
    assert translate.main([*base, "--output", str(tmp_path / "scaled"), "--size", "model", "--scale", "40"]) == 0
    with Image.open(tmp_path / "scaled" / "wide.png") as image:
        assert image.size == (60, 40)


@pytest.mark.parametrize("size, preset", [(32, "small"), (64, "small"), (128, "translation_128"),
                                          (256, "translation_256"), (None, "translation_256")])
def test_preset_follows_image_size(folders, size, preset):
    overrides = {"data.domain_a": str(folders[0]), "data.domain_b": str(folders[1])}
    if size:
        overrides["model.image_size"] = str(size)
    config = resolve_config("folders", None, overrides=overrides)
    assert config.preset == preset and config.model.image_size == (size or 256)


@pytest.mark.parametrize("argv, message", [
    (["--domain-a", "A"], "--domain-a and --domain-b go together"),
    (["--dataset", "mnist_usps", "--domain-a", "A", "--domain-b", "B"], "drop --dataset mnist_usps"),
    (["--dataset", "celeb_a"], "--attribute"),
    (["--dataset", "folder:"], "folder:"),
    (["--preset", "digits_da", "--domain-a", "{day}", "--domain-b", "{night}"], "model.num_classes"),
    (["--domain-a", "{day}", "--domain-b", "{night}", "--set", "model.dis_layers=9"], "model.dis_layers"),
])
def test_translation_flag_errors_are_one_clear_line(folders, tmp_path, argv, message):
    argv = [a.format(day=folders[0], night=folders[1]) for a in argv]
    with pytest.raises(UserError, match=message):
        train.make_config(train.parse_args([*argv, "--output-dir", str(tmp_path / "r")]))


def test_missing_folder_is_one_clean_line(tmp_path):
    result = run_script("train.py", "--domain-a", str(tmp_path / "nope"), "--domain-b", str(tmp_path),
                        "--output-dir", str(tmp_path / "r"))
    _assert_clean_error(result, str(tmp_path / "nope"))
    assert not (tmp_path / "r").exists()
