"""Translation benchmark: does a preset learn a KNOWN translation from two unpaired image folders, and how fast?

    python benchmarks/translation.py --minutes 10 [--preset small] [--image-size 32]

Domain A: bright shapes (ellipses, rectangles) of random colour on dark backgrounds; domain B: other such
images colour-inverted (dark shapes on bright backgrounds). The two folders hold DIFFERENT images (unpaired),
written as PNGs at 48 px and read through the image-folder pipeline (resize, random crop, flip). The right
translation is known: A -> B inverts colours, B -> A too. So besides UNIT's own reconstruction and cycle L1,
the benchmark measures the ground-truth error of the translations on held-out images, in [0, 1] pixel units:
mean |x_ab - (1 - x_a)|, next to the error of not translating at all (the identity).

Prints ONE JSON line: steps, seconds per step, a curve of {step, gt_l1_a2b, gt_l1_b2a, recon_l1, cycle_l1}
every --eval-every steps, the final values and the run directory (its samples/ hold the sample grids).
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domain_adaptation import parse_budgeted_run  # noqa: E402

from unit_tf.cli import ArgumentParser, positive_int, quiet_tensorflow  # noqa: E402
from unit_tf.errors import run_cli  # noqa: E402
from unit_tf.hardware import describe, resolve_precision  # noqa: E402

FILE_SIZE = 48  # the PNGs' size; training crops image_size from the resized images


def parse_args(argv: list[str] | None) -> Any:
    parser = ArgumentParser(prog="benchmarks/translation.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--image-size", type=positive_int, default=32)
    parser.add_argument("--images", type=positive_int, default=2000, help="training images per domain")
    parser.add_argument("--test-images", type=positive_int, default=200, help="held-out images per domain")
    parser.add_argument("--eval-every", type=positive_int, default=250, help="steps between curve points")
    return parse_budgeted_run(parser, argv)


def shapes(n: int, size: int, seed: int) -> np.ndarray:
    """n RGB images: one bright ellipse or rectangle of random colour on a dark random-colour background."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    images = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        ry, rx = rng.uniform(0.12, 0.3, 2) * size
        if rng.random() < 0.5:
            mask = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1.0
        else:
            mask = (np.abs(rows - cy) <= ry) & (np.abs(cols - cx) <= rx)
        images[i] = rng.integers(0, 70, 3)
        images[i][mask] = rng.integers(180, 256, 3)
    return images


def write_folder(images: np.ndarray, folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return folder


class GroundTruthCurve:
    """A Keras callback (built lazily, so this module imports without TensorFlow) recording, every `every`
    steps, the translations' ground-truth errors and UNIT's reconstruction and cycle errors on held-out images."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        import keras
        import tensorflow as tf

        from unit_tf.data.pipeline import to_model_range
        from unit_tf.evaluation import domain_errors

        class Curve(keras.callbacks.Callback):
            def __init__(self, test_a: np.ndarray, test_b: np.ndarray, every: int) -> None:
                super().__init__()
                self.test_a, self.test_b, self.every = test_a, test_b, every
                self.points: list[dict[str, float]] = []
                self._translate = None

            def measure(self, step: int) -> None:
                if self._translate is None:
                    self._translate = tf.function(self.model.translate)
                point: dict[str, float] = {"step": step}
                for name, images, source, target in (("a2b", self.test_a, "a", "b"),
                                                     ("b2a", self.test_b, "b", "a")):
                    x = to_model_range(images)
                    y = self._translate(x, source, target)
                    # The known translation inverts colours: -x in [-1, 1]; /2 gives [0, 1] pixel units.
                    point[f"gt_l1_{name}"] = round(float(tf.reduce_mean(tf.abs(y + x))) / 2, 4)
                errors = {**domain_errors(self.model, self.test_a, "a"), **domain_errors(self.model, self.test_b,
                                                                                         "b")}
                point["recon_l1"] = round((errors["recon_l1_a"] + errors["recon_l1_b"]) / 2, 4)
                point["cycle_l1"] = round((errors["cycle_l1_a"] + errors["cycle_l1_b"]) / 2, 4)
                self.points.append(point)
                print(json.dumps(point), file=sys.stderr, flush=True)

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                step = int(self.model.g_optimizer.iterations.numpy())
                if step % self.every == 0:
                    self.measure(step)

        return Curve(*args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow()
    from unit_tf.config import parse_set_flags, resolve_config
    from unit_tf.training import train

    desc, precision = describe(), resolve_precision(args.precision)
    data_root = Path(tempfile.mkdtemp(prefix="translation_data_"))
    folder_a = write_folder(shapes(args.images, FILE_SIZE, 0), data_root / "shapes")
    folder_b = write_folder(255 - shapes(args.images, FILE_SIZE, 1), data_root / "inverted")
    size = args.image_size
    test_a, test_b = shapes(args.test_images, size, 2), 255 - shapes(args.test_images, size, 3)
    overrides = {"data.domain_a": str(folder_a), "data.domain_b": str(folder_b), "model.image_size": size,
                 "train.steps": 10**9, "train.time_limit_minutes": args.minutes, "train.precision": precision,
                 "train.checkpoint_every": 10**9, "train.sample_every": args.eval_every}
    overrides.update(parse_set_flags(args.set))
    config = resolve_config("folders", args.preset, overrides=overrides)
    run_dir = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="translation_run_"))
    curve = GroundTruthCurve(test_a, test_b, args.eval_every)
    start = time.time()
    with contextlib.redirect_stdout(sys.stderr):
        model = train(config, run_dir, verbose=0, overwrite=bool(args.output_dir), callbacks=[curve]).model
    seconds = time.time() - start
    steps = int(model.g_optimizer.iterations.numpy())
    curve.set_model(model)
    if not curve.points or curve.points[-1]["step"] != steps:
        curve.measure(steps)
    identity = {"a2b": float(np.mean(np.abs(255 - 2 * test_a.astype(np.int32)))) / 255,
                "b2a": float(np.mean(np.abs(255 - 2 * test_b.astype(np.int32)))) / 255}
    final = curve.points[-1]
    result = {"preset": args.preset, "image_size": size, "precision": precision, "minutes": args.minutes,
              "steps": steps, "sec_per_step": round(seconds / max(steps, 1), 3),
              "gt_l1_a2b": final["gt_l1_a2b"], "gt_l1_b2a": final["gt_l1_b2a"],
              "identity_gt_l1_a2b": round(identity["a2b"], 4), "identity_gt_l1_b2a": round(identity["b2a"], 4),
              "recon_l1": final["recon_l1"], "cycle_l1": final["cycle_l1"], "curve": curve.points,
              "hardware": desc, "run_dir": str(run_dir), "samples": str(run_dir / "samples")}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks/translation.py")
