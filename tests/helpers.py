"""Generated test data and tiny configs (no network and no real data sets needed)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import keras
import numpy as np

from unit_tf.config import UNITConfig, resolve_config

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/NAME.py imported as a module (benchmarks/ is not a package), registered in sys.modules so
    its dataclasses resolve."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# Native sizes and channels of the three digit domains.
DOMAIN_SHAPES = {"mnist": (28, 1), "usps": (16, 1), "svhn": (32, 3)}


def synthetic_digits(n: int, size: int, channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is visible: class k draws a bright bar at a k-dependent place and angle."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.int64)
    x = np.zeros((n, size, size, channels), np.float32)
    rows = np.arange(size)[:, None]
    cols = np.arange(size)[None, :]
    for i, k in enumerate(y):
        center = size * (0.25 + 0.05 * k)
        if k % 2:
            mask = np.abs(rows - center) < size / 10
        else:
            mask = np.abs(cols - center) < size / 10
        mask = mask & (np.abs(rows - cols * (k / 9.0)) < size * 0.6)
        x[i][mask] = 1.0
    x += rng.normal(0, 0.05, x.shape)
    if channels == 3:  # SVHN-like: colored background, digit color varies
        x = x * rng.uniform(0.5, 1.0, (n, 1, 1, 3)) + rng.uniform(0, 0.4, (n, 1, 1, 3))
    return np.clip(x * 255, 0, 255).astype(np.uint8), y


def write_digit_dirs(root: Path, n_train: int = 64, n_test: int = 32) -> Path:
    """DIR/<domain>/{train,test}.npz for mnist, usps and svhn at their native sizes."""
    for seed, (name, (size, channels)) in enumerate(DOMAIN_SHAPES.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for split, n in (("train", n_train), ("test", n_test)):
            x, y = synthetic_digits(n, size, channels, seed=seed * 10 + (split == "test"))
            np.savez_compressed(folder / f"{split}.npz", x=x, y=y)
    return root


TINY = {
    "model.gen_ch": 4,
    "model.dis_ch": 4,
    "data.batch_size": 8,
    "train.log_every": 2,
    "train.sample_every": 2,
    "train.checkpoint_every": 2,
    "train.classifier_warmup_steps": 2,  # domain-adaptation presets (the data sets' defaults)
}


def tiny_config(dataset: str = "svhn_mnist", **overrides) -> UNITConfig:
    values = dict(TINY)
    values.update(overrides)
    return resolve_config(dataset, "digits", overrides=values)


def tiny_flags() -> list[str]:
    """The TINY settings as train.py flags."""
    return [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]


def run_script(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a top-level script (train.py, evaluate.py, ...) in a fresh interpreter."""
    import os

    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


TINY_TRANSLATION = {
    # The paper's down-sampling and sharing (as small has them; other values are tested switches).
    "model.n_downsample": 2,
    "model.shared_encoder_layers": 1,
    "model.shared_generator_layers": 1,
    "model.gen_ch": 4,
    "model.dis_ch": 4,
    "model.res_blocks": 2,
    "model.dis_layers": 2,
    "model.image_size": 16,
    "data.batch_size": 2,
    "train.log_every": 2,
    "train.sample_every": 2,
    "train.checkpoint_every": 2,
}


def tiny_translation_config(**overrides) -> UNITConfig:
    """The `small` translation preset shrunk to 16 px and widths 4 (RGB domains), without a data set."""
    from unit_tf.config import PRESETS, apply_overrides, fit_discriminator_scales, validate

    config = UNITConfig(preset="small")
    apply_overrides(config, PRESETS["small"])
    apply_overrides(config, {**TINY_TRANSLATION, **overrides})
    if "model.dis_scales" not in overrides:  # as resolve_config: the preset's scales, as many as fit 16 px
        fit_discriminator_scales(config.model)
    config.model.channels_a = config.model.channels_b = 3
    validate(config)
    return config


class StepLogs(keras.callbacks.Callback):
    """Every training step's logs as floats (per-step values when the trackers are reset after each step)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[dict[str, float]] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.steps.append({k: float(np.asarray(v)) for k, v in sorted((logs or {}).items())})


def photo_like(n: int, size: int, seed: int, warm: bool, width: int | None = None) -> np.ndarray:
    """Photo-like uint8 RGB images (size x width): a smooth blob, reddish for `warm` and bluish otherwise, on a
    gray background with pixel noise — two domains a small judge tells apart."""
    rng = np.random.default_rng(seed)
    width = width or size
    rows, cols = np.mgrid[0:size, 0:width] / max(size, width)
    tint = np.array([0.8, 0.4, 0.3]) if warm else np.array([0.3, 0.4, 0.8])
    images = np.empty((n, size, width, 3))
    for i in range(n):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.4)
        blob = np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / r**2)
        images[i] = 0.3 + 0.6 * blob[..., None] * tint + rng.normal(0, 0.05, (size, width, 3))
    return np.clip(images * 255, 0, 255).astype(np.uint8)


# `small` without decoder norms starts from near-constant outputs (the official N(0, 0.02) init, whatever the
# fan-in, through ReLU layers: std ~1e-5 at width 4, 6e-4 at width 32, against 0.02-0.04 with layer norms), so a
# few-step run of a tiny network paints one uniform grey. Tests of what a benchmark draws and measures (grids,
# sharpness) add these flags to see an image.
VISIBLE_AT_STEP_ONE = ("--set", "model.decoder_norm=layer")


def write_cycle_gan_folder(root: Path, n_train: int = 24, n_test: int = 8, size: int = 20) -> Path:
    """ROOT/trainA, trainB, testA, testB of non-square photo-like JPEGs (A warm, B cool)."""
    from PIL import Image

    for seed, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        for side, warm in (("A", True), ("B", False)):
            folder = root / f"{split}{side}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(photo_like(n, size, 2 * seed + warm, warm, width=size + 6)):
                Image.fromarray(image).save(folder / f"{i:03d}.jpg", quality=95)
    return root


def write_class_folders(root: Path, names: tuple[str, ...] = ("circle", "cross", "bar"), n: int = 8,
                        size: int = 20, channels: int = 1, seed: int = 0, labelled: bool = True) -> Path:
    """ROOT/<class name>/*.png of synthetic digit-like images, class k of `names` drawing digit k (`labelled`);
    otherwise the same images spread over nested folders with no class in their names."""
    from PIL import Image

    x, y = synthetic_digits(n * 30, size, channels, seed=seed)  # ~3n images of each digit
    for k, name in enumerate(names):
        images = x[y == k][:n]
        assert len(images) == n, f"only {len(images)} generated images of class {k}"
        folder = root / name if labelled else root / f"part{k % 2}" / "nested"
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            Image.fromarray(image[..., 0] if channels == 1 else image).save(folder / f"{name}_{i:03d}.png")
    return root
