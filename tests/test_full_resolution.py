"""Full-resolution translation: one decoder and resize for training and translating, residual networks at each
image's own aspect ratio (padded to the stride and cropped back exactly), digit networks at their square."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_config, tiny_translation_config
from PIL import Image

from unit_tf import translate
from unit_tf.config import UNITConfig
from unit_tf.data.image_domains import decode_rgb, load_image_pair, square
from unit_tf.data.image_files import decode_image, resize_shorter_side, to_channels
from unit_tf.errors import UserError
from unit_tf.model import build_model

S = 16  # the tiny residual model: image size 16, n_downsample 2 (multiple 4), training scale 16 (digit data)


def _photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus a little noise: photo-like, so resizing is not all aliasing."""
    rows, cols = np.mgrid[0:height, 0:width]
    base = np.stack([255 * cols / width, 255 * rows / height, 128 + 100 * np.sin(cols / 7 + rows / 5)], -1)
    noise = np.random.default_rng(seed).normal(0, 8, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    model = build_model(tiny_translation_config())
    assert model.size_multiple == 4 and translate.training_scale(model.unit_config) == S
    return model


def _exif_rotated_jpeg(path, pixels: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, exif=exif)


def test_exif_orientation_decodes_upright_in_training_and_translating(tmp_path):
    stored = _photo(30, 20)  # stored 30 wide, 20 tall; displayed 20 wide, 30 tall
    folder = tmp_path / "a"
    folder.mkdir()
    _exif_rotated_jpeg(folder / "rotated.jpg", stored)
    upright = to_channels(translate.load_image(folder / "rotated.jpg"), 3)
    assert upright.shape == (30, 20, 3)
    trained = decode_rgb(tf.constant((folder / "rotated.jpg").read_bytes())).numpy()
    np.testing.assert_array_equal(trained, upright)
    # The training pipeline (a folder domain) and translate's preprocessing resize it the same way, too.
    pair = load_image_pair("folders", 8, str(folder), str(folder), load_size=12)
    np.testing.assert_array_equal(pair.test_images("a")[0], square(upright, 8).numpy())
    scaled = translate.preprocess_scaled(translate.load_image(folder / "rotated.jpg"), 12, 3)
    assert scaled.shape == (18, 12, 3)
    np.testing.assert_array_equal(scaled, resize_shorter_side(trained, 12).numpy().astype(np.float32) / 127.5 - 1)
    batch = next(pair.batches(batch_size=1, seed=0).as_numpy_iterator())["x_a"]
    assert batch.shape == (1, 8, 8, 3)


def test_training_scale_is_the_effective_load_size():
    config = UNITConfig()
    config.data.dataset, config.model.image_size = "folders", 256
    assert translate.training_scale(config) == 286  # load_size 0: image_size * 286 / 256
    config.data.load_size = 300
    assert translate.training_scale(config) == 300
    config.data.dataset = "svhn_mnist"
    assert translate.training_scale(config) == 256


def test_non_square_photo_keeps_its_aspect_ratio_and_size(model, tmp_path):
    (tmp_path / "in").mkdir()
    Image.fromarray(_photo(90, 60)).save(tmp_path / "in" / "wide.png")
    Image.fromarray(_photo(30, 50, seed=1)).save(tmp_path / "in" / "tall.png")
    Image.fromarray(_photo(45, 30, seed=2)).save(tmp_path / "in" / "wide2.png")  # same scaled shape as wide
    translate.translate_paths(model, tmp_path / "in", tmp_path / "input", batch_size=3)
    assert Image.open(tmp_path / "input" / "wide.png").size == (90, 60)
    assert Image.open(tmp_path / "input" / "tall.png").size == (30, 50)
    translate.translate_paths(model, tmp_path / "in", tmp_path / "model", size="model", batch_size=3)
    assert Image.open(tmp_path / "model" / "wide.png").size == (24, 16)  # shorter side 16, 3:2 kept
    assert Image.open(tmp_path / "model" / "tall.png").size == (16, 27)
    translate.translate_paths(model, tmp_path / "in", tmp_path / "scaled", size="model", scale=18)
    assert Image.open(tmp_path / "scaled" / "wide.png").size == (27, 18)  # neither side a multiple of 4


def test_padding_and_cropping_are_exact(model, tmp_path):
    path = tmp_path / "in" / "wide.png"
    path.parent.mkdir()
    Image.fromarray(_photo(90, 60)).save(path)
    translate.translate_paths(model, path, tmp_path / "out", size="model", scale=18)
    written = np.asarray(Image.open(tmp_path / "out" / "wide.png"))
    x = translate.preprocess_scaled(translate.load_image(path), 18, 3)
    assert x.shape == (18, 27, 3)
    padded = np.pad(x, [(0, 2), (0, 1), (0, 0)], mode="reflect")  # to 20 x 28, multiples of 4
    y = model.translate(padded[None], "a", "b").numpy()[0, :18, :27]
    expected = translate.postprocess(np.clip(y, -1, 1))
    assert written.shape == expected.shape == (18, 27, 3)
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1
    # Sizes already multiples of 4 are not padded: the same as translate().
    x = np.random.default_rng(0).uniform(-1, 1, [2, 20, 28, 3]).astype(np.float32)
    np.testing.assert_allclose(model.translate_any_size(x, "a", "b").numpy(),
                               model.translate(x, "a", "b").numpy(), atol=1e-6)


def test_one_trace_for_every_shape(model):
    fn = translate.make_translator(model, "b", "a")
    for shape in ((1, 16, 24), (3, 18, 27), (2, 33, 16)):
        assert fn(np.zeros((*shape, 3), np.float32)).shape == (*shape, 3)
    assert fn.experimental_get_tracing_count() == 1


def test_scale_refusals(model, tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(_photo(20, 20)).save(path)
    with pytest.raises(UserError, match="at least 4"):
        translate.translate_paths(model, path, tmp_path / "o", scale=3)
    digits = build_model(tiny_config())
    with pytest.raises(UserError, match="--scale applies to residual networks"):
        translate.translate_paths(digits, path, tmp_path / "o", scale=32)
    assert not (tmp_path / "o").exists()


def test_decode_image_bytes_and_paths_agree(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(_photo(13, 9)).convert("P").save(buffer, format="GIF")
    (tmp_path / "p.gif").write_bytes(buffer.getvalue())
    np.testing.assert_array_equal(decode_image(buffer.getvalue(), 1), decode_image(tmp_path / "p.gif", 1))
    assert decode_image(tmp_path / "p.gif", 3).shape == (9, 13, 3)
