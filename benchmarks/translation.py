"""Translation fidelity benchmark: does a preset learn KNOWN translations from unpaired image folders, how
closely, and where does it miss?

    python benchmarks/translation.py --minutes 10 --photos ../shared/data/cat2dog
        [--tasks invert,hue,photo_negative] [--split test|dev] [--preset small] [--image-size 32]

Each task is its own training run of --minutes (same preset and --set overrides), one after another, in
OUTPUT_DIR/<task>/, on two folders of DIFFERENT (unpaired) 48 px PNGs read through the image-folder pipeline
(resize, random crop, flip). The right translation of every task is known:

- invert: A = bright shapes (ellipses, rectangles) of random colour on dark backgrounds, B = other such images
  colour-inverted. A -> B and B -> A: 255 - x.
- hue: A = shapes in warm colours (hues within 60 degrees of red, saturated: bright shapes on dark backgrounds),
  B = other such images hue-rotated by 120 degrees, the channel roll (R, G, B) -> (B, R, G) (greens and cyans).
  A -> B: the roll; B -> A: the inverse roll.
- photo_negative: natural photos (--photos: a CycleGAN-layout folder; trainA + trainB pooled, shuffled with a
  fixed seed, halved) against the other half's negatives. A -> B and B -> A: 255 - x. Test images: testA + testB
  pooled, shuffled, halved. Photos are centre-cropped to a square and resized (unit_tf/data/image_files.py).

A known answer must also be the only answer the unpaired data allow: each colour coordinate is drawn skewed,
over ranges that differ per channel (invert), so that no other simple map (two channels swapped, a reflected hue
range, the shape's and the background's colours exchanged) turns A's colour distribution into B's
(`dark_and_bright`, `warm`). The first versions of both tasks allowed such maps, and runs learned them.

Every task changes every pixel a lot (identity_l1 far above the error of a good translation): a map that
leaves most pixels alone (a mild tint of dark images, a hue turn of brownish photos) would be "learned" by
the identity.

--split dev measures on other held-out images, for tuning hyperparameters: shapes from other generator seeds;
DEV_PHOTOS of the pooled training photos, which are held out of training in both splits (the training data
are the same for test and dev).

Metrics (unit_tf/fidelity.py) per task and direction on the split's held-out images, translations rounded to
8 bit, [0, 1] pixel units: l1 to the truth beside identity_l1 (not translating), l1_edge / l1_flat on the
truth's edge / flat pixels (edge_fraction), sharpness (1 = as sharp as the truth), checkerboard and
checkerboard_corner (energy at the 2-pixel period relative to the truth's; >> 1 a checkerboard); with UNIT's
own reconstruction and cycle L1, and a curve every --eval-every steps.

Prints ONE JSON line: preset, image size, precision, minutes per task, split, hardware and per task the steps,
seconds per step, the metrics, the curve, the run directory and its grid.png (rows: test inputs A,
translations A -> B, truths A -> B, test inputs B, translations B -> A, truths B -> A). Logs go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from domain_adaptation import parse_budgeted_run  # noqa: E402

from unit_tf.cli import ArgumentParser, positive_int, quiet_tensorflow  # noqa: E402
from unit_tf.errors import run_cli  # noqa: E402
from unit_tf.hardware import describe, resolve_precision  # noqa: E402

FILE_SIZE = 48  # the PNGs' size; training crops image_size from the resized images
TASKS = ("invert", "hue", "photo_negative")
PHOTO_TASK = "photo_negative"
#: The invert task's domain A: per channel (R, G, B) the largest background value and the smallest shape value.
BACKGROUND_MAX, SHAPE_MIN = (180, 100, 25), (205, 215, 225)
#: The hue task's domain A: hues (fractions of a turn) of both colours, saturation and value of shape and
#: background.
WARM_HUES, SATURATION, SHAPE_VALUE, BACKGROUND_VALUE = (0.0, 1 / 6), (0.6, 1.0), (0.75, 1.0), (0.2, 0.4)
#: Hue rotation by 120 degrees: (R, G, B) -> (B, R, G), and back.
ROLL, UNROLL = [2, 0, 1], [1, 2, 0]
#: The photos' folder when --photos is not given (if it exists).
DEFAULT_PHOTOS = ROOT / ".." / "shared" / "data" / "cat2dog"
#: Pooled training photos held out of training (both splits) as the dev images; at most a quarter of them.
DEV_PHOTOS = 200
PHOTO_SEED = 0
#: Generator seeds of the shapes: training A, B; held-out A, B per split.
SHAPE_SEEDS = {"train": (0, 1), "test": (2, 3), "dev": (4, 5)}
#: Test images per domain in grid.png, and its upscale.
GRID_IMAGES, GRID_SCALE = 8, 4


def parse_args(argv: list[str] | None) -> Any:
    parser = ArgumentParser(prog="benchmarks/translation.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget PER TASK")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma list of {', '.join(TASKS)}")
    parser.add_argument("--photos", metavar="DIR", help=f"CycleGAN-layout folder for {PHOTO_TASK} (default "
                        "../shared/data/cat2dog from the repository root, if it exists)")
    parser.add_argument("--split", choices=("test", "dev"), default="test",
                        help="held-out images measured: test, or dev (for tuning hyperparameters)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--image-size", type=positive_int, default=32)
    parser.add_argument("--images", type=positive_int, default=2000, help="training images per domain")
    parser.add_argument("--test-images", type=positive_int, default=200, help="held-out images per domain")
    parser.add_argument("--eval-every", type=positive_int, default=250, help="steps between curve points")
    args = parse_budgeted_run(parser, argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown or not args.tasks or len(set(args.tasks)) != len(args.tasks):
        parser.error(f"--tasks must be distinct names among {', '.join(TASKS)}, got {','.join(args.tasks)}")
    if PHOTO_TASK in args.tasks:
        if args.photos is None and DEFAULT_PHOTOS.is_dir():
            args.photos = str(DEFAULT_PHOTOS.resolve())
        if args.photos is None:
            parser.error(f"task {PHOTO_TASK} needs photos and {DEFAULT_PHOTOS} does not exist: pass --photos DIR "
                         f"(a CycleGAN-layout folder: trainA, trainB, testA, testB) or drop {PHOTO_TASK} from --tasks")
        root = Path(args.photos)
        needed = ("trainA", "trainB") + (("testA", "testB") if args.split == "test" else ())
        missing = [name for name in needed if not (root / name).is_dir()]
        if missing:
            parser.error(f"--photos {root} has no {' or '.join(missing)} folder; pass a folder in the CycleGAN "
                         f"layout (trainA, trainB, testA, testB) or drop {PHOTO_TASK} from --tasks")
    return args


# ---------------------------------------------------------------------------------------------- the data

def skewed(rng: np.random.Generator, low: float, high: float, size: int | None = None) -> np.ndarray:
    """Values in [low, high] with density falling from low to high (low + (high - low) * u**2): an asymmetric
    distribution, so that no reflection of the range (x -> low + high - x) or shift keeps it."""
    return low + (high - low) * rng.random(size) ** 2


def dark_and_bright(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The invert task's colours: a dark background and a bright shape, each channel skewed towards its extreme
    over its own range (BACKGROUND_MAX, SHAPE_MIN).

    Skewed and unequal, so that the inversion is the only simple map of A's colours onto B's. In this task's
    first version every channel was uniform over the same range, and three other maps fitted B as well: the
    inversion with two channels swapped, painting the background in the shape's colour and the shape in the
    background's (B's backgrounds were A's shape colours), and within each range a shift instead of the
    reflection. The ranges' widths now differ per channel and between backgrounds (180, 100, 25) and shapes
    (50, 40, 30), and no shift or reflection keeps a skewed distribution."""
    background = np.floor(skewed(rng, 0, np.array(BACKGROUND_MAX) + 1))
    return background, 255 - np.floor(skewed(rng, 0, 256 - np.array(SHAPE_MIN)))


def warm(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The hue task's colours: saturated warm hues (WARM_HUES), a dark background and a bright shape; hue,
    saturation and value each skewed (towards red, full saturation, the extreme value) so that the roll is the
    only simple map onto B's colours. In this task's first version they were uniform, and a translation that
    reflected the hue range (red -> cyan, yellow -> green instead of red -> green, yellow -> cyan) fitted B as
    well as the roll, and so did reflecting saturation or value within their ranges."""
    import colorsys

    def colour(value: tuple[float, float], bright: bool) -> np.ndarray:
        h = skewed(rng, *WARM_HUES)
        s = SATURATION[1] + SATURATION[0] - skewed(rng, *SATURATION)
        v = value[1] + value[0] - skewed(rng, *value) if bright else skewed(rng, *value)
        return np.round(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)

    return colour(BACKGROUND_VALUE, False), colour(SHAPE_VALUE, True)


def shapes(n: int, size: int, seed: int,
           colours: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]] = dark_and_bright) -> np.ndarray:
    """n RGB images: one ellipse or rectangle on a flat background, colours (background, shape) from `colours`;
    default: bright random colours on dark ones."""
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
        background, shape = colours(rng)
        images[i] = background
        images[i][mask] = shape
    return images


def invert(images: np.ndarray) -> np.ndarray:
    return 255 - images


def roll(images: np.ndarray) -> np.ndarray:
    return images[..., ROLL]


def unroll(images: np.ndarray) -> np.ndarray:
    return images[..., UNROLL]


@dataclass
class Task:
    """Training folders' images (FILE_SIZE) and the held-out images (image size) with their truths."""

    train_a: np.ndarray
    train_b: np.ndarray
    test_a: np.ndarray
    test_b: np.ndarray
    to_b: Callable[[np.ndarray], np.ndarray]
    to_a: Callable[[np.ndarray], np.ndarray]

    @property
    def truth_a2b(self) -> np.ndarray:
        return self.to_b(self.test_a)

    @property
    def truth_b2a(self) -> np.ndarray:
        return self.to_a(self.test_b)


def shape_task(name: str, images: int, test_images: int, size: int, split: str) -> Task:
    """invert or hue."""
    (train_a, train_b), (test_a, test_b) = SHAPE_SEEDS["train"], SHAPE_SEEDS[split]
    colours, to_b, to_a = (dark_and_bright, invert, invert) if name == "invert" else (warm, roll, unroll)
    return Task(shapes(images, FILE_SIZE, train_a, colours), to_b(shapes(images, FILE_SIZE, train_b, colours)),
                shapes(test_images, size, test_a, colours), to_b(shapes(test_images, size, test_b, colours)), to_b,
                to_a)


def load_photos(paths: list[Path], size: int) -> np.ndarray:
    """uint8 [n, size, size, 3]: each photo decoded, centre-cropped to a square and resized."""
    from unit_tf.data.image_files import decode_image, resize

    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        image = decode_image(path, 3)
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        out[i] = resize(image[top:top + side, left:left + side], size, size).numpy()
    return out


def shuffled_halves(paths: list[Path], seed: int) -> tuple[list[Path], list[Path]]:
    order = np.random.default_rng(seed).permutation(len(paths))
    shuffled = [paths[i] for i in order]
    half = len(shuffled) // 2
    return shuffled[:half], shuffled[half:2 * half]


def photo_task(folder: str, images: int, test_images: int, size: int, split: str) -> Task:
    """photo_negative: pooled trainA + trainB shuffled; DEV_PHOTOS held out; the rest halved: A as-is, B
    inverted."""
    from unit_tf.data.image_files import list_images

    root = Path(folder)
    pool = list_images(root / "trainA") + list_images(root / "trainB")
    order = np.random.default_rng(PHOTO_SEED).permutation(len(pool))
    pool = [pool[i] for i in order]
    n_dev = min(DEV_PHOTOS, len(pool) // 4)
    dev, train = pool[:n_dev], pool[n_dev:]
    half = len(train) // 2
    train_a, train_b = train[:half][:images], train[half:2 * half][:images]
    if split == "dev":
        eval_a, eval_b = dev[:n_dev // 2], dev[n_dev // 2:2 * (n_dev // 2)]
    else:
        eval_a, eval_b = shuffled_halves(list_images(root / "testA") + list_images(root / "testB"), PHOTO_SEED)
    eval_a, eval_b = eval_a[:test_images], eval_b[:test_images]
    if not (train_a and eval_a):
        from unit_tf.errors import UserError

        raise UserError(f"--photos {root} has too few photos for {PHOTO_TASK} (training {len(train)}, "
                        f"{split} {len(eval_a) + len(eval_b)}); pass a bigger folder")
    return Task(load_photos(train_a, FILE_SIZE), invert(load_photos(train_b, FILE_SIZE)),
                load_photos(eval_a, size), invert(load_photos(eval_b, size)), invert, invert)


def make_task(name: str, args: Any) -> Task:
    if name == PHOTO_TASK:
        return photo_task(args.photos, args.images, args.test_images, args.image_size, args.split)
    return shape_task(name, args.images, args.test_images, args.image_size, args.split)


def write_folder(images: np.ndarray, folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return folder


def write_grid(rows: list[np.ndarray], path: Path) -> Path:
    """uint8 image rows (the first GRID_IMAGES of each) tiled with 2-px grey gaps, upscaled x GRID_SCALE."""
    from PIL import Image

    n = min(GRID_IMAGES, *(len(r) for r in rows))
    h, w = rows[0].shape[1:3]
    gap = 2
    grid = np.full((len(rows) * (h + gap) + gap, n * (w + gap) + gap, 3), 128, np.uint8)
    for r, row in enumerate(rows):
        for c in range(n):
            y, x = gap + r * (h + gap), gap + c * (w + gap)
            grid[y:y + h, x:x + w] = row[c]
    image = Image.fromarray(grid)
    image = image.resize((grid.shape[1] * GRID_SCALE, grid.shape[0] * GRID_SCALE), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def rounded(value: float) -> float | None:
    """4 decimals; None for nan / inf (no edges: valid JSON)."""
    return round(value, 4) if math.isfinite(value) else None


# ------------------------------------------------------------------------------------------ measurement

class FidelityCurve:
    """A Keras callback (built lazily, so this module imports without TensorFlow) recording, every `every`
    steps, the translations' errors to the truth (all and at edges) and UNIT's reconstruction and cycle errors
    on the held-out images; `final()` measures every fidelity metric."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        import keras
        import tensorflow as tf

        from unit_tf import fidelity
        from unit_tf.data.pipeline import to_model_range
        from unit_tf.evaluation import domain_errors

        class Curve(keras.callbacks.Callback):
            def __init__(self, task: Task, name: str, every: int) -> None:
                super().__init__()
                self.task, self.name, self.every = task, name, every
                self.truths = {"a2b": task.truth_a2b, "b2a": task.truth_b2a}
                self.edges = {k: fidelity.edge_mask(v / 255.0) for k, v in self.truths.items()}
                self.points: list[dict[str, Any]] = []
                self._translate = None

            def translations(self) -> dict[str, np.ndarray]:
                """Both directions' translations of the held-out images, rounded to uint8."""
                if self._translate is None:
                    self._translate = tf.function(
                        lambda x, s, t: tf.cast(self.model.translate(x, s, t, training=False), tf.float32),
                        reduce_retracing=True)
                out = {}
                for key, images, source, target in (("a2b", self.task.test_a, "a", "b"),
                                                    ("b2a", self.task.test_b, "b", "a")):
                    y = [self._translate(to_model_range(images[i:i + 100]), source, target).numpy()
                         for i in range(0, len(images), 100)]
                    out[key] = np.clip(np.round((np.concatenate(y) + 1.0) * 127.5), 0, 255).astype(np.uint8)
                return out

            def unit_errors(self) -> dict[str, float]:
                errors = {**domain_errors(self.model, self.task.test_a, "a"),
                          **domain_errors(self.model, self.task.test_b, "b")}
                return {"recon_l1": round((errors["recon_l1_a"] + errors["recon_l1_b"]) / 2, 4),
                        "cycle_l1": round((errors["cycle_l1_a"] + errors["cycle_l1_b"]) / 2, 4)}

            def measure(self, step: int) -> None:
                point: dict[str, Any] = {"task": self.name, "step": step}
                for key, y in self.translations().items():
                    y, truth = y / 255.0, self.truths[key] / 255.0
                    point[f"l1_{key}"] = rounded(float(np.abs(y - truth).mean()))
                    point[f"l1_edge_{key}"] = rounded(fidelity.masked_l1(y, truth, self.edges[key]))
                point.update(self.unit_errors())
                self.points.append(point)
                print(json.dumps(point), file=sys.stderr, flush=True)

            def final(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
                """Every fidelity metric of both directions, and the translations."""
                translations = self.translations()
                inputs = {"a2b": self.task.test_a, "b2a": self.task.test_b}
                metrics = {key: {k: rounded(v) for k, v in fidelity.fidelity(
                    y / 255.0, self.truths[key] / 255.0, inputs[key] / 255.0).items()}
                    for key, y in translations.items()}
                return metrics, translations

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                step = int(self.model.g_optimizer.iterations.numpy())
                if step % self.every == 0:
                    self.measure(step)

        return Curve(*args, **kwargs)


def run_task(name: str, args: Any, output_root: Path, precision: str) -> dict[str, Any]:
    """Write the task's folders, train one run of --minutes on them, measure it, write its grid."""
    from unit_tf.config import parse_set_flags, resolve_config
    from unit_tf.training import train

    print(f"benchmarks/translation.py: task {name}: preparing data", file=sys.stderr, flush=True)
    task = make_task(name, args)
    data_root = Path(tempfile.mkdtemp(prefix=f"translation_{name}_"))
    folder_a, folder_b = write_folder(task.train_a, data_root / "a"), write_folder(task.train_b, data_root / "b")
    overrides = {"data.domain_a": str(folder_a), "data.domain_b": str(folder_b), "model.image_size": args.image_size,
                 "train.steps": 10**9, "train.time_limit_minutes": args.minutes, "train.precision": precision,
                 "train.checkpoint_every": 10**9, "train.sample_every": args.eval_every}
    overrides.update(parse_set_flags(args.set))
    config = resolve_config("folders", args.preset, overrides=overrides)
    run_dir = output_root / name
    curve = FidelityCurve(task, name, args.eval_every)
    print(f"benchmarks/translation.py: task {name}: training {args.minutes} minutes in {run_dir}", file=sys.stderr,
          flush=True)
    start = time.time()
    with contextlib.redirect_stdout(sys.stderr):
        model = train(config, run_dir, verbose=0, overwrite=bool(args.output_dir), callbacks=[curve]).model
    seconds = time.time() - start
    steps = int(model.g_optimizer.iterations.numpy())
    curve.set_model(model)
    if not curve.points or curve.points[-1]["step"] != steps:
        curve.measure(steps)
    metrics, translations = curve.final()
    grid = write_grid([task.test_a, translations["a2b"], task.truth_a2b,
                       task.test_b, translations["b2a"], task.truth_b2a], run_dir / "grid.png")
    final = curve.points[-1]
    return {"steps": steps, "sec_per_step": round(seconds / max(steps, 1), 3),
            "train_images": len(task.train_a), "test_images": len(task.test_a), **metrics,
            "recon_l1": final["recon_l1"], "cycle_l1": final["cycle_l1"],
            "curve": [{k: v for k, v in p.items() if k != "task"} for p in curve.points],
            "run_dir": str(run_dir), "grid": str(grid)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow()
    desc, precision = describe(), resolve_precision(args.precision)
    output_root = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="translation_run_"))
    tasks = {name: run_task(name, args, output_root, precision) for name in args.tasks}
    result = {"preset": args.preset, "image_size": args.image_size, "precision": precision,
              "minutes": args.minutes, "split": args.split, "hardware": desc,
              "photos": args.photos if PHOTO_TASK in args.tasks else None, "tasks": tasks}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks/translation.py")
