"""`unit-tf train` / `python train.py`: train UNIT, e.g. `--dataset svhn_mnist` (every flag: docs/training.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from unit_tf.cli import (
    ArgumentParser,
    absolute,
    add_da_arguments,
    da_overrides,
    non_negative_int,
    positive_int,
    quiet_tensorflow,
)

if TYPE_CHECKING:
    from unit_tf.config import UNITConfig

quiet_tensorflow()


def parse_args(argv: list[str] | None = None, prog: str = "train.py") -> argparse.Namespace:
    from unit_tf.catalogue import DIGIT_PAIRS
    from unit_tf.config import MIXED_PRECISION, ON_NAN, PRESETS, STRATEGIES

    p = ArgumentParser(prog=prog, description="Train UNIT on two unpaired image domains.")
    p.add_argument("--dataset", metavar="NAME",
                   help=f"digit pair, source first ({', '.join(sorted(DIGIT_PAIRS))}; default svhn_mnist), "
                        "da:SOURCE,TARGET (domain adaptation on your own folders: see --source), or translation "
                        "images: folder:ROOT (trainA/trainB/testA/testB), cycle_gan/<name> (TFDS), "
                        "celeb_a (with --attribute); --domain-a/--domain-b imply 'folders'")
    p.add_argument("--domain-a", metavar="DIR", help="folder of domain A's images (any depth, jpg/png/bmp/webp)")
    p.add_argument("--domain-b", metavar="DIR", help="folder of domain B's images")
    add_da_arguments(p)
    p.add_argument("--attribute", help="celeb_a: the attribute that splits faces into domain A (with) and B "
                   "(without), e.g. Blond_Hair")
    p.add_argument("--image-size", type=positive_int,
                   help="training image size (translation data without --preset: <= 64 picks 'small', <= 128 "
                        "'translation_128', else 'translation_256')")
    p.add_argument("--data-dir", help="digits: folder with <domain>/{train,test}.npz or the official files "
                   "(default: $UNIT_DATA_DIR, then TFDS)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="named hyperparameter set")
    p.add_argument("--steps", type=positive_int, help="train until this global step")
    p.add_argument("--batch-size", type=positive_int, help="images per domain per step, over all replicas")
    p.add_argument("--output-dir", help="run directory (default: runs/<dataset>_<preset>)")
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=positive_int)
    p.add_argument("--sample-every", type=positive_int)
    p.add_argument("--log-every", type=positive_int)
    p.add_argument("--keep-checkpoints", type=non_negative_int, metavar="N",
                   help="keep the newest N checkpoints (default 3); 0 keeps every one")
    p.add_argument("--strategy", choices=STRATEGIES)
    p.add_argument("--logical-cpus", type=positive_int,
                   help="split the CPU into N logical devices (replicas for --strategy mirrored without GPUs)")
    p.add_argument("--export-dir", default="saved_models",
                   help="at the end, export a SavedModel to EXPORT_DIR/<run name>/<version>/ (default: saved_models)")
    p.add_argument("--no-export", action="store_true", help="do not export a SavedModel at the end")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --output-dir with its saved config (only steps, cadences, strategy "
                        "and data location may change)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run in --output-dir (its checkpoints, logs, samples) and start again")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic ops (tf.config.experimental.enable_op_determinism): bit-exact resumes")
    p.add_argument("--on-nan", choices=ON_NAN,
                   help="on a non-finite loss: stop, keeping the last good checkpoint (default), or skip the step")
    p.add_argument("--mixed-precision", choices=list(MIXED_PRECISION),
                   help="auto (default): bf16 where the hardware computes it natively (CPUs with AMX/AVX512-BF16, "
                        "GPUs of compute capability >= 8.0), else off; bf16: bfloat16 math (emulated elsewhere: "
                        "one warning line says what it costs); fp16: float16 math with dynamic loss scaling; off: "
                        "float32. Weights, outputs and losses stay float32. With --resume: switch between off "
                        "and bf16")
    p.add_argument("--config", help="JSON file of settings (e.g. a run's config.json)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set loss.gan=1 (repeatable)")
    return p.parse_args(argv)


def make_config(args: argparse.Namespace) -> UNITConfig:
    """The run's config from parsed flags (flags and --set override the preset, the --config file, or
    with --resume the run's saved config, of which only non-defining settings may change)."""
    from unit_tf.config import MIXED_PRECISION, NON_DEFINING_KEYS, parse_set_flags, resolve_config
    from unit_tf.errors import UserError
    from unit_tf.runs import RunDir

    overrides = parse_set_flags(args.set)
    dataset, da_flags = da_overrides(args.dataset, args)
    if (args.domain_a is None) != (args.domain_b is None):
        raise UserError("--domain-a and --domain-b go together: give both image folders")
    if args.domain_a is not None:
        if dataset not in (None, "folders"):
            raise UserError(f"--domain-a/--domain-b train on two folders; drop --dataset {dataset}")
        dataset = "folders"
    flags = {
        "data.domain_a": absolute(args.domain_a),
        "data.domain_b": absolute(args.domain_b),
        "data.attribute": args.attribute,
        "model.image_size": args.image_size,
        "data.data_dir": args.data_dir,
        "data.batch_size": args.batch_size,
        "train.steps": args.steps,
        "train.seed": args.seed,
        "train.checkpoint_every": args.checkpoint_every,
        "train.sample_every": args.sample_every,
        "train.log_every": args.log_every,
        "train.keep_checkpoints": args.keep_checkpoints,
        "train.strategy": args.strategy,
        "train.on_nan": args.on_nan,
        "train.deterministic": True if args.deterministic else None,
        "train.precision": MIXED_PRECISION.get(args.mixed_precision),
    }
    overrides.update({k: v for k, v in {**flags, **da_flags}.items() if v is not None})
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite exclude each other; pick one")
    if not args.resume:
        return resolve_config(dataset, args.preset, args.config, overrides)
    if not args.output_dir:
        raise UserError("--resume needs the --output-dir of the run to continue")
    run = RunDir(Path(args.output_dir))
    saved = run.read_config()
    changes = {k: v for k, v in overrides.items() if k in NON_DEFINING_KEYS}
    if args.mixed_precision:  # float32 <-> bfloat16 keeps the run (see config.defining_differences)
        changes["train.precision"] = MIXED_PRECISION[args.mixed_precision]
    return resolve_config(saved.data.dataset, saved.preset, run.config_path, changes)


def run_name(config: UNITConfig) -> str:
    """Default run folder name: <data set>_<preset>, the data set made file-name safe."""
    data = config.data
    if data.dataset in ("folders", "da"):
        name = f"{Path(data.domain_a).name}2{Path(data.domain_b).name}"
    elif data.dataset == "celeb_a":
        name = f"celeb_a_{data.attribute}"
    else:
        name = data.dataset.replace("folder:", "").rstrip("/").replace("/", "_").replace(":", "_")
        name = Path(name).name if data.dataset.startswith("folder:") else name
    return f"{name}_{config.preset}"


def main(argv: list[str] | None = None, prog: str = "train.py") -> int:
    args = parse_args(argv, prog)
    config = make_config(args)
    if args.logical_cpus:
        from unit_tf.distribute import configure_logical_cpus

        configure_logical_cpus(args.logical_cpus)
    from unit_tf.export import export_model
    from unit_tf.training import train

    output_dir = Path(args.output_dir or f"runs/{run_name(config)}")
    run = train(config, output_dir, overwrite=args.overwrite)
    # A completed run (or one that reached its time limit) is exported by the process that wrote it.
    if run.trained and run.chief and not args.no_export:
        print(f"Exported SavedModel to {export_model(run.model, Path(args.export_dir) / output_dir.resolve().name)}",
              flush=True)
    print(f"Run directory: {output_dir}")
    return 0
