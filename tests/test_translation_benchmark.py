"""benchmarks/translation.py: the known-answer fidelity metrics (unit_tf/fidelity.py), the tasks' data and
truths, and the benchmark end to end on tiny settings (one JSON line with every task)."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from helpers import ROOT, VISIBLE_AT_STEP_ONE, run_script, write_cycle_gan_folder

from unit_tf import fidelity


def load_benchmark():
    spec = importlib.util.spec_from_file_location("translation_benchmark", ROOT / "benchmarks" / "translation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = load_benchmark()


def truth_images(n: int = 6, size: int = 32) -> np.ndarray:
    """The benchmark's shapes in [0, 1]: flat areas and sharp edges."""
    return bench.shapes(n, size, 7) / 255.0


def checker(size: int) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    return np.where((rows + cols) % 2, 1.0, -1.0)[..., None]


def box_blur(images: np.ndarray) -> np.ndarray:
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = images.shape[1:3]
    return sum(padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0


# ------------------------------------------------------------------------------------------ the metrics

def test_identity_is_perfect():
    truth = truth_images()
    m = fidelity.fidelity(truth, truth, x=1.0 - truth)
    assert m["l1"] == m["l1_edge"] == m["l1_flat"] == 0.0
    assert m["sharpness"] == pytest.approx(1.0) and m["checkerboard"] == pytest.approx(1.0)
    assert m["checkerboard_corner"] == pytest.approx(1.0)
    assert m["identity_l1"] > 0.3 and 0.05 < m["edge_fraction"] < 0.6


def test_edge_mask_is_the_dilated_step():
    image = np.zeros((1, 8, 8, 3))
    image[:, :, 4:] = 1.0  # a vertical step between columns 3 and 4
    mask = fidelity.edge_mask(image)[0]
    assert mask[:, 2:5].all() and not mask[:, :2].any() and not mask[:, 5:].any()
    assert fidelity.gradient_magnitude(image)[0, 0, 3] == 1.0


def test_checkerboard_is_detected():
    truth = truth_images()
    y = truth + 0.1 * checker(32)
    assert fidelity.nyquist_share(checker(8))[0, 0] == pytest.approx(1.0)
    assert fidelity.checkerboard(y, truth) > 5.0
    assert fidelity.checkerboard_corner(y, truth) > 5.0


def test_checkerboard_in_one_corner():
    truth = truth_images()
    y = truth.copy()
    y[:, -8:, -8:] += 0.1 * checker(8)  # bottom-right only
    corner = fidelity.checkerboard_corner(y, truth)
    assert corner > 20.0 and corner > fidelity.checkerboard(y, truth)
    patches = [fidelity.checkerboard(py, pt) for py, pt in zip(fidelity.corner_patches(y),
                                                                fidelity.corner_patches(truth), strict=True)]
    assert patches[:3] == pytest.approx([1.0, 1.0, 1.0]) and patches[3] == corner


def test_blur_is_less_sharp_and_misses_at_edges():
    truth = truth_images()
    m = fidelity.fidelity(box_blur(truth), truth)
    assert m["sharpness"] < 0.7
    assert m["l1_edge"] > 0.05 > m["l1_flat"] * 5
    assert m["checkerboard"] < 1.0


def test_constant_tint_is_flat_and_edge_error():
    truth = truth_images()
    everywhere = fidelity.fidelity(truth + 0.05, truth)
    assert everywhere["l1_edge"] == pytest.approx(0.05) and everywhere["l1_flat"] == pytest.approx(0.05)
    assert everywhere["sharpness"] == pytest.approx(1.0) and everywhere["checkerboard"] == pytest.approx(1.0)
    flat = ~fidelity.edge_mask(truth)
    on_flat = fidelity.fidelity(truth + 0.05 * flat[..., None], truth)
    assert on_flat["l1_flat"] == pytest.approx(0.05) and on_flat["l1_edge"] == 0.0


def test_no_edges_gives_nan_not_an_error():
    flat = np.full((2, 8, 8, 3), 0.5)
    m = fidelity.fidelity(flat + 0.1, flat)
    assert np.isnan(m["l1_edge"]) and np.isnan(m["sharpness"]) and m["l1_flat"] == pytest.approx(0.1)
    assert bench.rounded(m["sharpness"]) is None


# ---------------------------------------------------------------------------------- the tasks' truths

def test_invert_truths_are_exact_and_identifiable():
    task = bench.shape_task("invert", 300, 3, 16, "test")
    assert np.array_equal(task.train_a, bench.shapes(300, bench.FILE_SIZE, 0))
    assert np.array_equal(task.train_b, 255 - bench.shapes(300, bench.FILE_SIZE, 1))
    assert np.array_equal(task.test_b, 255 - bench.shapes(3, 16, 3))
    assert np.array_equal(task.to_a(task.to_b(task.test_a)), task.test_a)
    dev = bench.shape_task("invert", 4, 3, 16, "dev")
    assert np.array_equal(dev.train_a, task.train_a[:4]) and not np.array_equal(dev.test_a, task.test_a)
    # Only the inversion itself turns A's colours into B's: with the channels in any other order, the
    # inverted backgrounds' channel means miss B's by tens of levels (they match within a few).
    corner = lambda images: images[:, 0, 0].astype(float)  # noqa: E731 - the background colour
    a, b = corner(task.train_a), corner(task.train_b)
    assert np.abs((255 - a).mean(0) - b.mean(0)).max() < 6
    for order in fidelity.OTHER_CHANNEL_ORDERS:
        assert np.abs((255 - a[:, order]).mean(0) - b.mean(0)).max() > 20
    # Nor does a lightness flip that keeps the hue (255 - x with the chroma x - mean(x) kept).
    flipped = 255 - a.mean(1, keepdims=True) + (a - a.mean(1, keepdims=True))
    assert np.abs(flipped.mean(0) - b.mean(0)).max() > 20
    # Nor painting the background in the shape's colour (A's shape colours in any order are not B's backgrounds).
    masks = shape_masks(task.train_a)
    shape_colours = np.array([image[mask].mean(0) for image, mask in zip(task.train_a, masks, strict=True)])
    for order in [[0, 1, 2], *fidelity.OTHER_CHANNEL_ORDERS]:
        assert np.abs(shape_colours[:, order].mean(0) - b.mean(0)).max() > 20


def shape_masks(images: np.ndarray) -> np.ndarray:
    """[N, H, W]: the pixels whose colour differs from the top-left (background) pixel."""
    return np.any(images != images[:, :1, :1], axis=-1)


def test_l1_permuted_finds_a_channel_swapped_answer():
    truth = truth_images()
    assert fidelity.l1_permuted(truth[..., [1, 0, 2]], truth) == 0.0
    m = fidelity.fidelity(truth[..., [0, 2, 1]], truth)
    assert m["l1_permuted"] == 0.0 < m["l1"]
    assert fidelity.fidelity(truth, truth)["l1_permuted"] > 0.01


def test_hue_task_turns_warm_colours_to_cool_ones_exactly():
    import colorsys

    task = bench.shape_task("hue", 6, 4, 16, "test")
    assert np.array_equal(task.to_a(task.truth_a2b), task.test_a) and np.array_equal(task.to_b(task.truth_b2a),
                                                                                    task.test_b)

    def hues(images: np.ndarray) -> np.ndarray:
        colours = np.unique(images.reshape(-1, 3), axis=0) / 255.0
        return np.array([colorsys.rgb_to_hsv(*c)[0] for c in colours])

    assert hues(task.test_a).max() <= 1 / 6 + 0.01 and hues(task.train_a).max() <= 1 / 6 + 0.01  # warm
    # Skewed towards red, so reflecting the hue range (red <-> yellow) changes the distribution.
    assert hues(bench.shape_task("hue", 300, 4, 16, "test").train_a).mean() < 0.4 * (1 / 6)
    assert ((hues(task.test_b) >= 1 / 3 - 0.01) & (hues(task.test_b) <= 1 / 2 + 0.01)).all()  # green to cyan
    # Not translating is far from the truth: every pixel changes.
    assert np.abs(task.test_a / 255.0 - task.truth_a2b / 255.0).mean() > 0.15


def test_hue_roll_inverts():
    x = np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3)
    assert np.array_equal(bench.roll(x)[..., 0], x[..., 2]) and np.array_equal(bench.roll(x)[..., 1], x[..., 0])
    assert np.array_equal(bench.unroll(bench.roll(x)), x)


def test_photo_task_without_photos_is_one_error_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(bench, "DEFAULT_PHOTOS", tmp_path / "none")
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--tasks", "invert,photo_negative"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--photos" in err[0] and "--tasks" in err[0]
    assert bench.parse_args(["--tasks", "invert,hue"]).tasks == ["invert", "hue"]


def test_bad_photos_folder_is_one_error_line(tmp_path):
    result = run_script("benchmarks/translation.py", "--tasks", "photo_negative", "--photos", str(tmp_path / "none"))
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "--photos" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


# ---------------------------------------------------------------------------------------- end to end

def test_translation_benchmark_prints_one_json_line(tmp_path):
    photos = write_cycle_gan_folder(tmp_path / "photos")
    result = run_script("benchmarks/translation.py", "--minutes", "0.02", "--images", "16", "--test-images", "4",
                        "--eval-every", "2", "--image-size", "16", "--output-dir", str(tmp_path / "run"),
                        "--photos", str(photos), "--set", "model.gen_ch=4", "--set", "model.dis_ch=4",
                        "--set", "model.dis_layers=2", "--set", "data.batch_size=2", *VISIBLE_AT_STEP_ONE)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["preset"] == "small" and out["split"] == "test" and out["image_size"] == 16
    assert list(out["tasks"]) == ["invert", "hue", "photo_negative"]
    for name, task in out["tasks"].items():
        assert task["steps"] >= 1 and task["curve"][-1]["step"] == task["steps"], name
        assert task["test_images"] == 4 and task["train_images"] == 16
        for key in ("recon_l1", "cycle_l1"):
            assert 0.0 <= task[key] <= 1.0
        for direction in ("a2b", "b2a"):
            m = task[direction]
            for key in ("l1", "identity_l1", "l1_edge", "l1_flat", "edge_fraction"):
                assert 0.0 <= m[key] <= 1.0, (name, direction, key)
            assert m["identity_l1"] > 0.15, (name, direction)  # not translating is wrong in every task
            for key in ("sharpness", "checkerboard", "checkerboard_corner"):
                assert m[key] > 0.0, (name, direction, key)
        assert (tmp_path / "run" / name / "grid.png").is_file()
    assert out["tasks"]["invert"]["a2b"]["identity_l1"] > 0.5
