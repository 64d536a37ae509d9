"""benchmarks/photo_translation.py end to end on a tiny generated CycleGAN-layout folder: one JSON line with the
judge's metrics per checkpoint, the curve PNG and the sample grid."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import VISIBLE_AT_STEP_ONE, run_script, write_cycle_gan_folder


def test_photo_benchmark_prints_one_json_line_with_a_curve(tmp_path):
    data = write_cycle_gan_folder(tmp_path / "warm2cool")
    result = run_script("benchmarks/photo_translation.py", "--data", str(data), "--minutes", "0.05",
                        "--preset", "small", "--image-size", "16", "--eval-every", "1",
                        "--output-dir", str(tmp_path / "run"), "--set", "model.gen_ch=4", "--set", "model.dis_ch=4",
                        "--set", "model.dis_layers=2", "--set", "data.batch_size=2",
                        *VISIBLE_AT_STEP_ONE)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert [p["step"] for p in out["curve"]] == list(range(1, out["steps"] + 1))  # every checkpoint measured
    final = out["final"]
    assert final["kid_features"] == "judge" and "kid_a2b" not in final  # offline: judge features, other names
    for key in ("judge_accuracy", "translation_success_a2b", "translation_success_b2a", "identity_success_a2b",
                "identity_success_b2a", "cycle_l1"):
        assert 0.0 <= final[key] <= 1.0
    assert final["judge_accuracy"] > 0.8  # warm vs cool blobs: an easy judge
    assert out["num_test_a"] == out["num_test_b"] == 8
    for key in ("grid", "curve_png"):
        assert (tmp_path / "run" / "eval").as_posix() in out[key] and out[key].endswith(".png")
    from PIL import Image

    grid = np.asarray(Image.open(out["grid"]).convert("RGB")).astype(int)
    rows = 16 + 2  # image size + padding
    for row in range(6):  # A, A->B, A->B->A, B, B->A, B->A->B: images, not the white padding
        tile = grid[2 + row * rows:row * rows + rows, 2:18]
        # The inputs (rows 0, 3) are textured; a 4-channel network after a few steps may paint nearly flat
        # translations, so those rows only have to be drawn (not white, not one constant fill).
        assert tile.min() < 200 and tile.std() > (3 if row in (0, 3) else 0), f"grid row {row} is blank"


def test_photo_benchmark_refuses_a_folder_without_the_layout(tmp_path):
    result = run_script("benchmarks/photo_translation.py", "--data", str(tmp_path), "--minutes", "1")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "has no trainA or trainB folder; pass a folder in the CycleGAN layout" in line


def test_dev_split_holds_out_a_fixed_draw_of_the_training_images(tmp_path):
    from helpers import load_benchmark

    from unit_tf.data.image_files import list_images
    from unit_tf.errors import UserError

    bench = load_benchmark("photo_translation")
    data = write_cycle_gan_folder(tmp_path / "photos", n_train=10, n_test=2)
    dev = bench.dev_split(data, tmp_path / "dev", 3)
    for side in ("A", "B"):
        train = [p.resolve() for p in list_images(dev / f"train{side}")]
        held = [p.resolve() for p in list_images(dev / f"test{side}")]
        assert len(train) == 7 and len(held) == 3 and not set(train) & set(held)
        assert set(train) | set(held) == set(list_images(data / f"train{side}"))  # the test folders untouched
    first = sorted(p.name for p in list_images(dev / "testA"))
    bench.dev_split(data, tmp_path / "dev", 3)  # rebuilt in place: the same draw whatever the run's seed
    assert sorted(p.name for p in list_images(dev / "testA")) == first
    (tmp_path / "mine").mkdir()
    with pytest.raises(UserError, match="is not a dev split of this benchmark"):
        bench.dev_split(data, tmp_path / "mine", 3)  # a folder it did not write is never removed
    with pytest.raises(UserError, match="--dev-images 10 leaves no training images"):
        bench.dev_split(data, tmp_path / "dev2", 10)


def test_photo_benchmark_dev_split_never_reads_the_test_folders(tmp_path):
    data = write_cycle_gan_folder(tmp_path / "warm2cool", n_train=16, n_test=1)
    for side in ("A", "B"):
        shutil.rmtree(data / f"test{side}")
    result = run_script("benchmarks/photo_translation.py", "--data", str(data), "--minutes", "0.02",
                        "--split", "dev", "--dev-images", "4", "--preset", "small", "--image-size", "16",
                        "--eval-every", "1000", "--output-dir", str(tmp_path / "run"), "--set", "model.gen_ch=4",
                        "--set", "model.dis_ch=4", "--set", "model.dis_layers=2", "--set", "data.batch_size=2")
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["split"] == "dev" and out["num_test_a"] == out["num_test_b"] == 4
    assert out["measured_on"] == str(tmp_path / "run_dev_data")
