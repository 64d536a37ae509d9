"""Photo translation benchmark: train on a CycleGAN-layout folder of real photos for a wall-clock budget, then
measure every kept checkpoint with evaluate.py's translation metrics.

    python benchmarks/photo_translation.py --data ../shared/data/cat2dog --minutes 60 [--preset photo_64]
        [--image-size 64] [--seed 0] [--eval-every 250] [--split test|dev]

DIR holds trainA / trainB (and testA / testB: the metrics' images; without them each train folder's first
images). --split dev is for choosing hyperparameters without the test images: --dev-images of each training
folder (a fixed draw, the same for every run) are held out of training and of the judge's training, and are
the metrics' images; testA / testB are not read. The split is built as links in OUTPUT_DIR_dev_data.

Training gets the whole budget (start-up and data loading excluded) and writes a checkpoint every
--eval-every steps; afterwards (outside the budget) the domain judge is trained or read from its cache and each
checkpoint is measured: the judge's accuracy on the real test images, translation success A->B and B->A beside
the identity floor (what the untranslated images score), KID (Inception-V3 features, else the judge's:
kid_judge_*), and UNIT's reconstruction and cycle L1. No checkpoint is chosen by these numbers: the final
model's are the result.

Prints ONE JSON line: steps, image size, preset, hardware, the final metrics, the curve (one point per
checkpoint), and the files written to the run directory's eval/: the curve as a PNG and the final model's
translation grid (rows: A, A->B, A->B->A, B, B->A, B->A->B on the first test images).
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
from unit_tf.errors import UserError, run_cli  # noqa: E402
from unit_tf.hardware import describe, resolve_precision  # noqa: E402

#: Test images per domain in the committed sample grid.
GRID_IMAGES = 8
#: The held-out dev images are drawn with this seed whatever --seed is: every dev run is measured on the same
#: images by the same judge.
DEV_SEED = 0
#: Marks a dev-split folder as this benchmark's own (it is rebuilt on every run; nothing else is ever removed).
DEV_MARKER = ".photo_translation_dev_split"
#: Curve keys drawn in the PNG (fractions, 0..1) and the KID keys drawn beside them.
SUCCESS_KEYS = ("translation_success_a2b", "translation_success_b2a", "identity_success_a2b",
                "identity_success_b2a", "cycle_l1")


def parse_args(argv: list[str] | None) -> Any:
    parser = ArgumentParser(prog="benchmarks/photo_translation.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, metavar="DIR", help="folder with trainA, trainB (testA, testB)")
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock training budget")
    parser.add_argument("--preset", default="photo_64", help="config preset (default photo_64)")
    parser.add_argument("--image-size", type=positive_int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=positive_int, default=250, help="steps between checkpoints measured")
    parser.add_argument("--feature-weights", metavar="PATH", help="Inception-V3 weights file for KID (offline)")
    parser.add_argument("--judge-dir", metavar="DIR", help="judge cache (default ~/.cache/unit_tf/judges)")
    parser.add_argument("--split", choices=("test", "dev"), default="test",
                        help="images measured: test (testA / testB), or dev (held out of trainA / trainB, for "
                             "tuning hyperparameters)")
    parser.add_argument("--dev-images", type=positive_int, default=100,
                        help="with --split dev: training images per domain held out")
    args = parse_budgeted_run(parser, argv)
    root = Path(args.data)
    missing = [name for name in ("trainA", "trainB") if not (root / name).is_dir()]
    if missing:
        parser.error(f"--data {root} has no {' or '.join(missing)} folder; pass a folder in the CycleGAN layout "
                     "(trainA, trainB, optional testA, testB)")
    return args


def dev_split(data: Path, dest: Path, held_out: int) -> Path:
    """DEST/trainA, trainB, testA, testB as links to DATA's training images: per domain a fixed draw of
    `held_out` images (DEV_SEED) as the test folder, the rest as the training folder. Returns DEST."""
    import shutil

    from unit_tf.data.image_files import list_images

    if dest.exists():
        if not (dest / DEV_MARKER).is_file():
            raise UserError(f"{dest} exists and is not a dev split of this benchmark; move it away or choose "
                            "another --output-dir")
        shutil.rmtree(dest)
    sides = {side: list_images(data / f"train{side}") for side in ("A", "B")}
    for side, files in sides.items():
        if len(files) <= held_out:
            raise UserError(f"--dev-images {held_out} leaves no training images in {data / f'train{side}'} "
                            f"({len(files)} images); pass a smaller --dev-images")
    dest.mkdir(parents=True)
    # The marker first: a build that stops half-way is still recognised as ours and rebuilt next time.
    (dest / DEV_MARKER).write_text(f"dev split of {data.resolve()}: {held_out} images per domain, seed {DEV_SEED}\n")
    for side, files in sides.items():
        dev = set(np.random.default_rng(DEV_SEED).permutation(len(files))[:held_out].tolist())
        for part in ("train", "test"):
            (dest / f"{part}{side}").mkdir()
        for i, path in enumerate(files):
            # Linked under its relative path's name: the sorted order of each part is the original's.
            name = path.relative_to(data / f"train{side}").as_posix().replace("/", "__")
            (dest / f"{'test' if i in dev else 'train'}{side}" / name).symlink_to(path.resolve())
    return dest


def grid_rows(model: Any, test_a: Any, test_b: Any) -> list[Any]:
    """A, A->B, A->B->A, B, B->A, B->A->B of the first test images, 8-bit translations, in [-1, 1]."""
    from unit_tf.translation_metrics import translate_uint8

    a, b = test_a[:GRID_IMAGES], test_b[:GRID_IMAGES]
    ab, ba = translate_uint8(model, a, "a", "b"), translate_uint8(model, b, "b", "a")
    rows = [a, ab, translate_uint8(model, ab, "b", "a"), b, ba, translate_uint8(model, ba, "a", "b")]
    return [row.astype(np.float32) / 127.5 - 1.0 for row in rows]  # make_grid takes the model's [-1, 1]


def curve_png(curve: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Translation success (solid) beside the identity floors (dashed) and cycle L1; KID on a second panel."""
    from unit_tf.plots import _pyplot, _save

    plt = _pyplot()
    steps = [p["step"] for p in curve]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    for key in SUCCESS_KEYS:
        left.plot(steps, [p[key] for p in curve], marker=".", label=key,
                  linestyle="--" if key.startswith("identity") else "-")
    left.set(xlabel="step", ylabel="fraction / L1", title=title, ylim=(0, 1))
    for key in [k for k, v in curve[-1].items() if k.startswith("kid") and not k.endswith("_std")
                and isinstance(v, float)]:
        right.plot(steps, [p[key] for p in curve], marker=".", label=key,
                   linestyle="--" if "identity" in key else "-")
    right.set(xlabel="step", ylabel="KID (lower: closer to the real target images)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def measure_checkpoints(model: Any, config: Any, run_dir: Path, feature_weights: str | None,
                        judge_dir: str | None) -> tuple[list[dict[str, Any]], Any, Any]:
    """Every checkpoint of the run measured on the data's test images (the dev split's held-out images with
    --split dev). Returns the curve and both domains' images; `model` ends with the last checkpoint's weights."""
    from unit_tf.checkpoints import RunCheckpoint
    from unit_tf.data.sources import load_eval_data
    from unit_tf.evaluation import domain_errors
    from unit_tf.translation_metrics import TranslationMetrics

    data = load_eval_data(config, "test")  # one scan and decode per folder: test and training images
    train_a, train_b, a, b = data.train_a, data.train_b, data.a, data.b
    metrics = TranslationMetrics(train_a, train_b, a.images, b.images, feature_weights, judge_dir)
    checkpoints = RunCheckpoint(model, run_dir / "checkpoints")
    curve = []
    for step in checkpoints.steps():
        checkpoints.restore_step(step, weights_only=True)
        point: dict[str, Any] = {"step": step, **metrics(model)}
        errors = {**domain_errors(model, a.images, "a"), **domain_errors(model, b.images, "b")}
        point.update(errors)
        point["cycle_l1"] = (errors["cycle_l1_a"] + errors["cycle_l1_b"]) / 2
        point["recon_l1"] = (errors["recon_l1_a"] + errors["recon_l1_b"]) / 2
        curve.append({k: round(v, 4) if isinstance(v, float) else v for k, v in point.items()})
        print(json.dumps({k: v for k, v in curve[-1].items() if k not in ("judge", "kid_features")}),
              file=sys.stderr, flush=True)
    return curve, a, b


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow()
    from unit_tf.config import parse_set_flags, resolve_config
    from unit_tf.images import make_grid, write_png
    from unit_tf.runs import RunDir
    from unit_tf.training import train

    desc, precision = describe(), resolve_precision(args.precision)
    overrides = {"model.image_size": args.image_size, "train.seed": args.seed, "train.steps": 10**9,
                 "train.time_limit_minutes": args.minutes, "train.precision": precision,
                 "train.checkpoint_every": args.eval_every, "train.keep_checkpoints": 0,
                 "train.sample_every": 10**9}
    overrides.update(parse_set_flags(args.set))
    run_dir = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="photo_run_"))
    data = Path(args.data)
    if args.split == "dev":
        data = dev_split(data, run_dir.with_name(run_dir.name + "_dev_data"), args.dev_images)
    config = resolve_config(f"folder:{data}", args.preset, overrides=overrides)
    start = time.time()
    with contextlib.redirect_stdout(sys.stderr):
        trained = train(config, run_dir, verbose=0, overwrite=bool(args.output_dir))
    seconds = time.time() - start
    model, steps, run = trained.model, trained.model.step, RunDir(run_dir)
    curve, a, b = measure_checkpoints(model, config, run_dir, args.feature_weights, args.judge_dir)
    if not curve or curve[-1]["step"] != steps:
        raise UserError(f"the run's final step {steps} has no checkpoint in {run.checkpoints}")
    grid = write_png(make_grid(grid_rows(model, a.images, b.images)), run.eval / f"photo_grid_step_{steps}.png")
    title = f"{a.name} <-> {b.name}, {args.image_size} px, {config.preset}"
    plot = curve_png(curve, run.eval / "photo_curve.png", title)
    result = {"data": str(args.data), "split": args.split, "measured_on": str(data), "preset": config.preset,
              "image_size": args.image_size, "seed": args.seed,
              "precision": precision, "minutes": args.minutes, "steps": steps,
              "train_seconds": round(seconds, 1), "sec_per_step": round(seconds / max(steps, 1), 3),
              "batch_size": config.data.batch_size, "num_test_a": len(a.images), "num_test_b": len(b.images),
              "final": curve[-1], "curve": curve, "hardware": desc, "run_dir": str(run_dir), "grid": str(grid),
              "curve_png": str(plot)}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks/photo_translation.py")
