#!/usr/bin/env python
"""Train UNIT: `python train.py --dataset svhn_mnist` (the same as `unit-tf train`; every flag: docs/training.md).
The command lives in unit_tf/commands/train.py, so the installed package has it too."""

from unit_tf.commands.train import main, make_config, parse_args, run_name  # noqa: F401  (used by tests, scripts)
from unit_tf.errors import run_cli

if __name__ == "__main__":
    run_cli(main, "train.py")
