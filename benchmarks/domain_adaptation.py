"""Domain-adaptation benchmark: the source-only baseline and UNIT within one wall-clock budget.

    python benchmarks/domain_adaptation.py --pair mnist_usps --minutes 30 --data-dir ../shared/data

Within `--minutes` (all of it, start-up excluded): the source-only classifier (D_a's layers + the classifier
head on labelled source images, `train.classifier_warmup_steps` steps) is trained and tested on the target
test split; UNIT then starts from it and trains until the budget is spent. The FINAL model is evaluated on
the target test split (no checkpoint is chosen by target labels). Prints ONE JSON line on stdout; training
logs go to stderr. The run directory (checkpoints, accuracy.csv, eval/) stays in --output-dir.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unit_tf.catalogue import DIGIT_PAIRS  # noqa: E402
from unit_tf.cli import ArgumentParser, quiet_tensorflow  # noqa: E402
from unit_tf.errors import run_cli  # noqa: E402
from unit_tf.hardware import describe, resolve_precision  # noqa: E402

PAIRS = tuple(DIGIT_PAIRS)
LAST_EVALUATIONS = 5  # the spread reported over the last few logged evaluations


def parse_args(argv: list[str] | None) -> Any:
    parser = ArgumentParser(prog="benchmarks/domain_adaptation.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", required=True, choices=PAIRS, help="source_target digit pair")
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock budget for both models")
    parser.add_argument("--data-dir", help="folder with <domain>/{train,test}.npz or official files (else TFDS)")
    parser.add_argument("--preset", default="digits_da_small",
                        help="config preset (default digits_da_small, the CPU budget recipe; digits_da = official "
                             "widths)")
    parser.add_argument("--seed", type=int, default=0)
    return parse_budgeted_run(parser, argv)


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
        "unit_accuracy": round(history[-1]["target_accuracy"], 4),
        f"unit_accuracy_last{len(last)}_mean": round(sum(last) / len(last), 4),
        f"unit_accuracy_last{len(last)}_range": [round(min(last), 4), round(max(last), 4)],
        "evaluated_steps": [int(row["step"]) for row in history[-LAST_EVALUATIONS:]],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow()
    from unit_tf.config import parse_set_flags, resolve_config
    from unit_tf.training import train

    desc, precision = describe(), resolve_precision(args.precision)
    overrides = {"data.data_dir": args.data_dir, "train.seed": args.seed, "train.steps": 10**9,
                 "train.time_limit_minutes": args.minutes, "train.precision": precision,
                 "train.checkpoint_every": 10**9, "train.sample_every": 10**9}
    overrides.update(parse_set_flags(args.set))
    config = resolve_config(args.pair, args.preset, overrides={k: v for k, v in overrides.items() if v is not None})
    if config.model.num_classes <= 0 or config.train.classifier_warmup_steps <= 0:
        from unit_tf.errors import UserError

        raise UserError(f"preset '{args.preset}' has no classifier head or source-only warm-up; use a digits_da* "
                        "preset")
    run_dir = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix=f"da_{args.pair}_"))
    start = time.time()
    with contextlib.redirect_stdout(sys.stderr):
        model = train(config, run_dir, verbose=0, overwrite=bool(args.output_dir)).model
    minutes = (time.time() - start) / 60
    result = {"pair": args.pair, "preset": args.preset, "minutes": args.minutes,
              "steps": int(model.g_optimizer.iterations.numpy()), "precision": precision}
    result.update(summarize(run_dir, args.minutes))
    result.update({"wall_minutes": round(minutes, 2), "hardware": desc, "run_dir": str(run_dir)})
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks/domain_adaptation.py")
