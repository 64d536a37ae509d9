#!/usr/bin/env python
"""Train UNIT: `python train.py --dataset svhn_mnist` (see README.md for every flag)."""

from __future__ import annotations

from pathlib import Path

from unit_tf.cli import ArgumentParser, positive_int, quiet_tensorflow
from unit_tf.errors import run_cli

quiet_tensorflow()


def parse_args(argv: list[str] | None = None):
    from unit_tf.config import PRESETS
    from unit_tf.data.digits import DIGIT_PAIRS
    from unit_tf.distribute import STRATEGIES

    p = ArgumentParser(prog="train.py", description="Train UNIT on two unpaired image domains.")
    p.add_argument("--dataset", choices=sorted(DIGIT_PAIRS), help="domain pair, source first (default: "
                   "svhn_mnist, or the --config file's)")
    p.add_argument("--data-dir", help="folder with <domain>/{train,test}.npz or the official files "
                   "(default: $UNIT_DATA_DIR, then TFDS)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="named hyperparameter set")
    p.add_argument("--steps", type=positive_int, help="train until this global step")
    p.add_argument("--batch-size", type=positive_int, help="images per domain per step, over all replicas")
    p.add_argument("--output-dir", help="run directory (default: runs/<dataset>_<preset>)")
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=positive_int)
    p.add_argument("--sample-every", type=positive_int)
    p.add_argument("--log-every", type=positive_int)
    p.add_argument("--strategy", choices=STRATEGIES)
    p.add_argument("--logical-cpus", type=positive_int,
                   help="split the CPU into N logical devices (replicas for --strategy mirrored without GPUs)")
    p.add_argument("--export-dir", default="saved_models",
                   help="at the end, export a SavedModel to EXPORT_DIR/<run name>/<version>/ (default: saved_models)")
    p.add_argument("--no-export", action="store_true", help="do not export a SavedModel at the end")
    p.add_argument("--config", help="JSON file of settings (e.g. a run's config.json)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set loss.gan=1 (repeatable)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from unit_tf.config import parse_set_flags, resolve_config

    overrides = parse_set_flags(args.set)
    flags = {
        "data.data_dir": args.data_dir,
        "data.batch_size": args.batch_size,
        "train.steps": args.steps,
        "train.seed": args.seed,
        "train.checkpoint_every": args.checkpoint_every,
        "train.sample_every": args.sample_every,
        "train.log_every": args.log_every,
        "train.strategy": args.strategy,
    }
    overrides.update({k: v for k, v in flags.items() if v is not None})
    config = resolve_config(args.dataset, args.preset, args.config, overrides)

    if args.logical_cpus:
        from unit_tf.distribute import configure_logical_cpus

        configure_logical_cpus(args.logical_cpus)
    from unit_tf.training import train

    output_dir = Path(args.output_dir or f"runs/{config.data.dataset}_{config.preset}")
    export_dir = None if args.no_export else Path(args.export_dir) / output_dir.resolve().name
    train(config, output_dir, export_dir=export_dir)
    print(f"Run directory: {output_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main, "train.py")
