"""Source-only baseline on its own: the DA classifier (D_a's layers + head) trained on labelled source only.

    python benchmarks/source_only.py --pair usps_mnist --minutes 30 --data-dir ../shared/data
    python benchmarks/source_only.py --source SRC --target TGT --target-test TGT_TEST --minutes 30

Answers "would the baseline catch up with more training?": trains for the whole `--minutes` budget (the budget
UNIT gets in benchmarks/domain_adaptation.py) and logs target test accuracy every `--eval-every` steps and at
the deadline (benchmarks/domain_adaptation.py --seeds runs the same for each seed). Takes the same data
arguments as benchmarks/domain_adaptation.py (a digit pair, or your own folders). Prints ONE JSON line: pair,
preset, minutes, steps, final accuracies, the accuracy curve, hardware.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from domain_adaptation import (  # noqa: E402
    add_data_arguments,
    benchmark_config,
    data_name,
    data_set,
    final_target_accuracies,
    source_only_curve,
)

from unit_tf.cli import ArgumentParser, positive_int, quiet_tensorflow  # noqa: E402
from unit_tf.errors import run_cli  # noqa: E402
from unit_tf.hardware import describe, resolve_precision  # noqa: E402


def parse_args(argv: list[str] | None) -> Any:
    parser = ArgumentParser(prog="benchmarks/source_only.py", description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock training budget")
    parser.add_argument("--data-dir")
    parser.add_argument("--preset", default="digits_da_small")
    parser.add_argument("--eval-every", type=positive_int, default=1000, help="steps between evaluations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override (as in benchmarks/domain_adaptation.py, e.g. data.invert_a=true)")
    args = parser.parse_args(argv)
    if not 0 < args.minutes < float("inf"):
        parser.error(f"--minutes must be > 0, got {args.minutes}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow()
    dataset, data_flags = data_set(args)
    desc, precision = describe(), resolve_precision("auto")
    config = benchmark_config(args, dataset, data_flags, args.seed, precision)
    points = source_only_curve(config, args.minutes, args.eval_every)
    final = points[-1]
    print(json.dumps({"pair": data_name(config), "preset": args.preset, "minutes": args.minutes,
                      "steps": final["step"], "source_accuracy": final["source_accuracy"],
                      **final_target_accuracies(points, "source_only_accuracy"), "curve": points,
                      "precision": precision, "hardware": desc}), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks/source_only.py")
