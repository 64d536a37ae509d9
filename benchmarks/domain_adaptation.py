"""Domain-adaptation benchmark: the source-only baseline and UNIT within one wall-clock budget.

    python benchmarks/domain_adaptation.py --pair mnist_usps --minutes 30 --data-dir ../shared/data
    python benchmarks/domain_adaptation.py --source SRC --target TGT --target-test TGT_TEST --minutes 30

Within `--minutes` (all of it, start-up excluded): the source-only classifier (D_a's layers + the classifier
head on labelled source images, `train.classifier_warmup_steps` steps) is trained and tested on the target
test split; UNIT then starts from it and trains until the budget is spent. The FINAL model is evaluated on
the target test split (no checkpoint is chosen by target labels). Prints ONE JSON line on stdout; training
logs go to stderr. The run directory (checkpoints, accuracy.csv, eval/) stays in --output-dir.

`--seeds 0,1,2` repeats this per seed, each run in OUTPUT_DIR/seed_<N>, and by default also trains the
source-only classifier alone for the whole budget (the second baseline; --minutes more per seed): one JSON
line per seed as soon as it ends, then a summary line (mean, sample std, min, max over the seeds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unit_tf.catalogue import DA_DATASET, DIGIT_PAIRS  # noqa: E402
from unit_tf.cli import ArgumentParser, add_da_arguments, da_overrides, quiet_tensorflow  # noqa: E402
from unit_tf.errors import UserError, run_cli  # noqa: E402
from unit_tf.hardware import describe, resolve_precision  # noqa: E402

PAIRS = tuple(DIGIT_PAIRS)
LAST_EVALUATIONS = 5  # the spread reported over the last few logged evaluations


def parse_args(argv: list[str] | None) -> Any:
    parser = ArgumentParser(prog="benchmarks/domain_adaptation.py", description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock budget for both models")
    parser.add_argument("--data-dir", help="folder with <domain>/{train,test}.npz or official files (else TFDS)")
    parser.add_argument("--preset", default="digits_da_small",
                        help="config preset (default digits_da_small, the CPU budget recipe; digits_da = official "
                             "widths)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="one run with this seed (default 0)")
    seeds.add_argument("--seeds", type=seed_list, metavar="S1,S2,...",
                       help="one run per seed, each in OUTPUT_DIR/seed_<N>: a JSON line per seed, then a summary")
    parser.add_argument("--whole-budget-baseline", action=argparse.BooleanOptionalAction, default=None,
                        help="per seed, also train the source-only classifier alone for the whole --minutes "
                             "(doubles the time; default: on with --seeds, off with --seed)")
    return parse_budgeted_run(parser, argv)


def add_data_arguments(parser: ArgumentParser) -> None:
    """The data flags of the DA benchmarks: a digit pair, or your own folders as train.py takes them."""
    parser.add_argument("--pair", "--dataset", dest="pair", help=f"source_target digit pair ({', '.join(PAIRS)}), "
                        "or da:SOURCE,TARGET (your own folders, as --source/--target)")
    add_da_arguments(parser)


def seed_list(text: str) -> list[int]:
    """--seeds: distinct integers separated by commas."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas (e.g. 0,1,2), got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"each seed once, got {text!r}")
    return seeds


def parse_budgeted_run(parser: ArgumentParser, argv: list[str] | None) -> Any:
    """Add the flags every training benchmark has (--precision, --output-dir, --set), parse, check --minutes."""
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                        help="auto: bfloat16 where the hardware computes it natively (AMX/AVX512-BF16 CPU, GPU of "
                             "compute capability >= 8.0), else float32; an emulated bfloat16/float16 gets a warning")
    parser.add_argument("--output-dir", help="run directory (default: a new temporary folder)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args(argv)
    if not 0 < args.minutes < float("inf"):
        parser.error(f"--minutes must be > 0, got {args.minutes}")
    return args


def data_set(args: Any) -> tuple[str, dict[str, Any]]:
    """The data set (a digit pair, or "da": your own folders, with labelled target test images) and the config
    overrides of its flags."""
    from unit_tf.data.class_folders import find

    dataset, flags = da_overrides(args.pair, args)
    if dataset not in (*PAIRS, DA_DATASET):
        raise UserError(f"give a digit pair (--pair {' | '.join(PAIRS)}) or your own folders (--source DIR --target "
                        "DIR --target-test DIR)")
    if dataset == DA_DATASET and find(flags["data.domain_a"], flags["data.domain_b"],
                                      flags.get("data.target_test")).target_test is None:
        raise UserError("the benchmark measures target accuracy: give labelled target images with --target-test DIR "
                        "(or a target folder with test.npz)")
    return dataset, flags


def data_name(config: Any) -> str:
    """The data set as the JSON lines name it: the digit pair, or da:SOURCE,TARGET."""
    data = config.data
    return f"da:{data.domain_a},{data.domain_b}" if data.dataset == DA_DATASET else data.dataset


def summarize(run_dir: Path, budget_minutes: float) -> dict[str, Any]:
    from unit_tf import adaptation
    from unit_tf.runs import RunDir

    run = RunDir(run_dir)
    baseline = adaptation.read_json(run.source_only_json)
    history = adaptation.read_accuracy_csv(run.accuracy_csv)
    last = [row["target_accuracy"] for row in history[-LAST_EVALUATIONS:]]
    return {
        "source_only_steps": baseline["steps"],
        "source_only_seconds": baseline["seconds"],
        "source_only_accuracy": round(baseline["target_accuracy"], 4),
        "unit_source_accuracy": round(history[-1]["source_accuracy"], 4),
        # The final model's own prediction (what evaluate.py reports): colour-averaged where the preset says so.
        "unit_accuracy": round(history[-1].get("target_accuracy_jitter_mean", history[-1]["target_accuracy"]), 4),
        "unit_accuracy_plain": round(history[-1]["target_accuracy"], 4),
        f"unit_accuracy_last{len(last)}_mean": round(sum(last) / len(last), 4),
        f"unit_accuracy_last{len(last)}_range": [round(min(last), 4), round(max(last), 4)],
        "evaluated_steps": [int(row["step"]) for row in history[-LAST_EVALUATIONS:]],
    }


SUMMARIZED = ("unit_accuracy", "unit_accuracy_plain", "source_only_accuracy", "source_only_whole_budget_accuracy",
              "source_only_whole_budget_accuracy_jitter_mean")


def summarize_seeds(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary line of a --seeds run: mean, sample std (n - 1; null for one seed), min and max of UNIT's
    final target accuracy and of the two source-only baselines, over the seeds' lines."""
    first = lines[0]
    summary: dict[str, Any] = {"summary": "seeds", "pair": first["pair"], "preset": first["preset"],
                               "minutes": first["minutes"], "seeds": [line["seed"] for line in lines]}
    for key in SUMMARIZED:
        values = [line[key] for line in lines if key in line]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else None
            summary[key] = {"mean": round(statistics.fmean(values), 4),
                            "std": None if std is None else round(std, 4),
                            "min": min(values), "max": max(values)}
    summary["hardware"] = first["hardware"]
    return summary


def run_seed(args: Any, config: Any, run_dir: Path, whole_budget: bool) -> dict[str, Any]:
    """One seed: the warm-up and UNIT within --minutes in `run_dir`, then (with `whole_budget`) the
    source-only classifier alone for --minutes. Returns the seed's JSON line."""
    from unit_tf.training import train

    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON lines only
        start = time.time()
        model = train(config, run_dir, verbose=0, overwrite=bool(args.output_dir)).model
        minutes = (time.time() - start) / 60
        result = {"pair": data_name(config), "preset": args.preset, "minutes": args.minutes,
                  "seed": config.train.seed, "steps": int(model.g_optimizer.iterations.numpy()),
                  "precision": config.train.precision}
        if config.data.class_names:
            result["class_names"] = config.data.class_names
        result.update(summarize(run_dir, args.minutes))
        if whole_budget:
            print(f"Seed {config.train.seed}: the source-only classifier alone for {args.minutes:g} minutes",
                  flush=True)
            result.update(whole_budget_baseline(config, args.minutes))
    result.update({"wall_minutes": round(minutes, 2), "hardware": describe(), "run_dir": str(run_dir)})
    return result


def whole_budget_baseline(config: Any, minutes: float) -> dict[str, Any]:
    """The second baseline: the same classifier (fresh, seeded as the run) on labelled source images for the
    whole budget, as benchmarks/source_only.py trains it."""
    curve = source_only_curve(config, minutes)
    return {"source_only_whole_budget_steps": curve[-1]["step"],
            **final_target_accuracies(curve, "source_only_whole_budget_accuracy")}


def final_target_accuracies(curve: list[dict[str, Any]], key: str) -> dict[str, float]:
    """A source-only curve's last target accuracy as `key`, and its colour-averaged reading as `key`_jitter_mean
    where the curve recorded one."""
    final = curve[-1]
    values = {key: final["target_accuracy"]}
    if "target_accuracy_jitter_mean" in final:
        values[f"{key}_jitter_mean"] = final["target_accuracy_jitter_mean"]
    return values


def source_only_curve(config: Any, minutes: float, eval_every: int = 1000) -> list[dict[str, Any]]:
    """A fresh classifier (seeded as the run) trained on the labelled source, with the warm-up's inverted copies,
    for `minutes`: its accuracy curve (every `eval_every` steps and at the deadline)."""
    import keras

    from unit_tf import adaptation
    from unit_tf.data.sources import load_labelled_splits
    from unit_tf.model import build_model

    train_a, _, test_a, test_b = load_labelled_splits(config)
    keras.utils.set_random_seed(config.train.seed)
    return adaptation.train_source_only_for(build_model(config), train_a, test_a, test_b, minutes,
                                            config.data.batch_size, config.train.seed, eval_every)


def benchmark_config(args: Any, dataset: str, data_flags: dict[str, Any], seed: int, precision: str,
                     **train: Any) -> Any:
    """The run's config: --preset, the data flags, seed and precision, `train` settings, then --set on top."""
    from unit_tf.config import parse_set_flags, resolve_config

    overrides = {"data.data_dir": args.data_dir, "train.seed": seed, "train.precision": precision,
                 **{f"train.{key}": value for key, value in train.items()}, **data_flags, **parse_set_flags(args.set)}
    return resolve_config(dataset, args.preset, overrides={k: v for k, v in overrides.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow()
    dataset, data_flags = data_set(args)
    precision = resolve_precision(args.precision)
    configs = [benchmark_config(args, dataset, data_flags, seed, precision, steps=10**9,
                                time_limit_minutes=args.minutes, checkpoint_every=10**9, sample_every=10**9)
               for seed in args.seeds or [args.seed or 0]]
    if configs[0].model.num_classes <= 0 or configs[0].train.classifier_warmup_steps <= 0:
        raise UserError(f"preset '{args.preset}' has no classifier head or source-only warm-up; use a digits_da* "
                        "preset")
    whole_budget = bool(args.seeds) if args.whole_budget_baseline is None else args.whole_budget_baseline
    prefix = f"da_{'own' if dataset == DA_DATASET else dataset}_"
    root = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix=prefix))
    lines = []
    for config in configs:
        run_dir = root / f"seed_{config.train.seed}" if args.seeds else root
        if args.seeds:
            print(f"Seed {config.train.seed} ({len(lines) + 1} of {len(configs)}): UNIT in {run_dir}",
                  file=sys.stderr, flush=True)
        lines.append(run_seed(args, config, run_dir, whole_budget))
        print(json.dumps(lines[-1]), flush=True)
    if args.seeds:
        print(json.dumps(summarize_seeds(lines)), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks/domain_adaptation.py")
