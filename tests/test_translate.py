"""`python -m unit_tf.translate`: image files of any mode, size and format through a tiny trained run."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from helpers import run_script, tiny_config
from PIL import Image

from unit_tf import translate
from unit_tf.errors import UserError

S = 32  # the tiny svhn_mnist model's image size; domain a is RGB (svhn), b gray (mnist)
# name relative to the input folder -> (PIL mode, width, height)
GOOD_IMAGES = {
    "top.png": ("RGB", 40, 30),
    "gray.jpg": ("L", 28, 28),
    "palette.gif": ("P", 24, 36),
    "sub/pic.bmp": ("RGB", 17, 33),
    "sub/pic.webp": ("RGB", 64, 64),
    "sub/deep/alpha.PNG": ("RGBA", 50, 20),
    "sub/deep/exact.png": ("L", S, S),
}
LOSSLESS = [name for name in GOOD_IMAGES if name.lower().endswith((".png", ".bmp"))]


def _assert_clean_error(result, *fragments, alone=True):
    """Exit code 2, one `prog: error:` line naming `fragments`; with `alone`, nothing else on stderr (refusals
    come before TensorFlow is imported, so not even its start-up log)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    error_lines = [line for line in result.stderr.splitlines() if re.match(r"^[\w. -]+: error: ", line)]
    assert len(error_lines) == 1, result.stderr
    assert not alone or len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0]


def _snapshot(folder):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    """A 2-step svhn_mnist run (translation preset, widths 4)."""
    from unit_tf.training import train

    run = tmp_path_factory.mktemp("runs") / "R"
    config = tiny_config(**{"data.data_dir": str(data_dir), "train.steps": 2, "train.sample_every": 100})
    train(config, run, verbose=0)
    return run


@pytest.fixture(scope="module")
def model(run_dir):
    from unit_tf.runs import load_trained

    model, config, step = load_trained(run_dir)
    assert step == 2 and config.model.image_size == S
    assert (config.model.channels_a, config.model.channels_b) == (3, 1)
    return model


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A nested folder of good images (mixed formats, modes, sizes), one corrupt PNG and a text file."""
    root = tmp_path_factory.mktemp("inputs") / "in"
    rng = np.random.default_rng(0)
    for name, (mode, width, height) in GOOD_IMAGES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        channels = {"L": 1, "P": 1, "RGB": 3, "RGBA": 4}[mode]
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
        if mode == "P":
            image = Image.fromarray(np.repeat(pixels, 3, axis=-1)).convert("P")
        image.save(path, format=translate.FORMATS[path.suffix.lower()][0])
    (root / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (root / "notes.txt").write_text("not an image\n")
    return root


def _channels(path):
    """Channels of a written image as stored; GIF (palette) and WebP (always RGB) count as 1 if gray."""
    image = Image.open(path)
    if path.suffix.lower() in (".gif", ".webp"):
        rgb = np.asarray(image.convert("RGB"), np.int16)
        return 1 if np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).max() <= 3 else 3
    return len(image.getbands())


def test_folder_a2b_keeps_relative_paths_sizes_and_target_channels(model, images, tmp_path):
    out = tmp_path / "out"
    result = translate.translate_paths(model, images, out, direction="a2b", batch_size=3)
    assert sorted(p.relative_to(out).as_posix() for p in result.written) == sorted(GOOD_IMAGES)
    assert [p.name for p in result.skipped] == ["broken.png"]
    for name, (_, width, height) in GOOD_IMAGES.items():
        written = out / name
        assert Image.open(written).size == (width, height), name
        assert _channels(written) == 1, name  # domain b (mnist) is gray
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(GOOD_IMAGES)  # no notes.txt, no broken.png, no temporary files left


def test_translation_equals_model_translate_on_the_preprocessed_batch(model, images, tmp_path):
    out = tmp_path / "out"
    translate.translate_paths(model, images, out, direction="a2b", size="model", batch_size=2)
    batch = np.stack([translate.preprocess(translate.load_image(images / n), S, 3) for n in LOSSLESS])
    assert batch.shape == (len(LOSSLESS), S, S, 3) and batch.min() >= -1 and batch.max() <= 1
    expected = translate.postprocess(model.translate(batch, "a", "b"))
    written = np.stack([np.asarray(Image.open(out / n))[..., None] for n in LOSSLESS])
    assert written.shape == (len(LOSSLESS), S, S, 1)
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1


def test_one_tf_function_trace_for_every_batch_size(model):
    fn = translate.make_translator(model, "b", "a")
    for n in (1, 3, 2):
        assert fn(np.zeros((n, S, S, 1), np.float32)).shape == (n, S, S, 3)
    assert fn.experimental_get_tracing_count() == 1


def test_cli_folder_b2a_at_model_size(run_dir, images, tmp_path):
    out = tmp_path / "out"
    result = run_script("-m", "unit_tf.translate", "--run-dir", str(run_dir), "--direction", "b2a",
                        "--input", str(images), "--output", str(out), "--size", "model", "--batch-size", "4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"Translated {len(GOOD_IMAGES)} images (b -> a) to {out}"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: skipped 1 unreadable image(s): broken.png"], result.stderr
    assert "Traceback" not in result.stderr
    for name in GOOD_IMAGES:
        assert Image.open(out / name).size == (S, S), name
        if not name.endswith((".gif", ".webp")):  # (an untrained run's RGB may look gray in those two)
            assert _channels(out / name) == 3, name  # domain a (svhn) is RGB
    assert not (out / "notes.txt").exists() and not (out / "sub" / "broken.png").exists()


def test_single_file_refuses_to_overwrite_unless_asked(run_dir, model, images, tmp_path):
    out = tmp_path / "out"
    source = images / "sub" / "pic.bmp"
    result = translate.translate_paths(model, source, out, direction="a2b", size="model")
    assert result.written == [out / "pic.bmp"] and list(out.iterdir()) == [out / "pic.bmp"]
    assert Image.open(out / "pic.bmp").size == (S, S)
    before = _snapshot(out)
    args = ["-m", "unit_tf.translate", "--run-dir", str(run_dir), "--direction", "a2b", "--input", str(source),
            "--output", str(out)]
    _assert_clean_error(run_script(*args), str(out / "pic.bmp"), "already exists", "--overwrite")
    assert _snapshot(out) == before
    assert translate.main(args[2:] + ["--overwrite"]) == 0  # in-process: the same parser and flags
    assert Image.open(out / "pic.bmp").size == (17, 33)  # --size input now
    assert sorted(out.iterdir()) == [out / "pic.bmp"]


def test_refusals_before_translating(run_dir, images, tmp_path):
    before = _snapshot(images)
    base = ["-m", "unit_tf.translate", "--run-dir", str(run_dir), "--direction", "a2b"]
    _assert_clean_error(run_script(*base, "--input", str(images), "--output", str(images / "sub" / "out")),
                        "overlaps")
    _assert_clean_error(run_script(*base, "--input", str(images / "sub"), "--output", str(images)), "overlaps")
    _assert_clean_error(run_script(*base, "--input", str(images / "gray.jpg"), "--output", str(images)),
                        "would replace it")
    _assert_clean_error(run_script(*base, "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o")),
                        "does not exist")
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images here\n")
    _assert_clean_error(run_script(*base, "--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o")),
                        "holds no images")
    bad = run_script("-m", "unit_tf.translate", "--run-dir", str(run_dir), "--direction", "a2c", "--input",
                     str(images), "--output", str(tmp_path / "o"))
    _assert_clean_error(bad, "--direction", "invalid choice")
    assert _snapshot(images) == before and not (tmp_path / "o").exists()


def test_run_dir_without_checkpoint(run_dir, images, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(run_dir / "config.json", fresh / "config.json")
    result = run_script("-m", "unit_tf.translate", "--run-dir", str(fresh), "--direction", "a2b", "--input",
                        str(images), "--output", str(tmp_path / "o"))
    _assert_clean_error(result, "has no checkpoint yet", alone=False)  # TensorFlow was loaded
    assert not (tmp_path / "o").exists()


def test_no_readable_image_is_an_error(model, images, tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    shutil.copy(images / "sub" / "broken.png", corrupt / "a.png")
    (corrupt / "b.jpg").write_bytes(b"")
    with pytest.raises(UserError, match=r"none of the 2 input image\(s\) could be read \(a.png, b.jpg\)"):
        translate.translate_paths(model, corrupt, tmp_path / "o")
    assert not (tmp_path / "o").exists()
