"""Shared command-line plumbing: quiet TensorFlow start-up, the argument parser's error style, and the data flags
of domain adaptation on your own files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from unit_tf.errors import USAGE_EXIT_CODE, UserError


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ start-up chatter (set before TF is imported; a user's own setting wins)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def absolute(path: str | None) -> str | None:
    """A folder flag as an absolute path (a run's config.json must not depend on where the command ran)."""
    return str(Path(path).expanduser().resolve()) if path else None


def add_da_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of domain adaptation on your own files (dataset "da"; train.py and the DA benchmark)."""
    parser.add_argument("--source", metavar="DIR", help="domain adaptation: labelled source images, one subfolder "
                        "per class (or a folder with train.npz, test.npz); same as --dataset da:SOURCE,TARGET")
    parser.add_argument("--target", metavar="DIR", help="domain adaptation: unlabelled target images, any layout "
                        "(or a folder with train.npz and optional labelled test.npz)")
    parser.add_argument("--target-test", metavar="DIR", help="domain adaptation: labelled target images (class "
                        "subfolders named like the source's, or a folder with test.npz), for evaluation only")
    parser.add_argument("--channels", type=int, choices=(1, 3), help="domain adaptation: convert both domains' "
                        "images to 1 (gray) or 3 (RGB) channels (default: each domain keeps its own)")


def da_overrides(dataset: str | None, args: argparse.Namespace) -> tuple[str | None, dict[str, Any]]:
    """The data set and config overrides that add_da_arguments' flags (and --dataset da:SOURCE,TARGET) give,
    folders made absolute."""
    from unit_tf.catalogue import DA_DATASET, DA_SYNTAX, is_da_dataset, split_da_dataset

    flags = {"data.target_test": absolute(args.target_test), "data.channels": args.channels}
    if (args.source is None) != (args.target is None):
        raise UserError("--source and --target go together: give the labelled source and the unlabelled target")
    if dataset is not None and is_da_dataset(dataset) and dataset != DA_DATASET:
        if args.source is not None:
            raise UserError(f"--dataset {DA_SYNTAX} and --source/--target name the same folders; give one of them")
        source, target = split_da_dataset(dataset)
        dataset = DA_DATASET
    elif args.source is not None:
        if dataset not in (None, DA_DATASET):
            raise UserError(f"--source/--target name your own folders; drop the data set '{dataset}'")
        source, target, dataset = args.source, args.target, DA_DATASET
    else:
        source = target = None
    if source is not None:
        flags.update({"data.domain_a": absolute(source), "data.domain_b": absolute(target)})
    return dataset, {k: v for k, v in flags.items() if v is not None}
