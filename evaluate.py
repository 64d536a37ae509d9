#!/usr/bin/env python
"""Evaluate a run or an export: `python evaluate.py --run-dir R` or `--saved-model DIR` (the same as
`unit-tf evaluate`); prints one JSON object as the last line of stdout. The command lives in
unit_tf/commands/evaluate.py, so the installed package has it too."""

from unit_tf.commands.evaluate import main
from unit_tf.errors import run_cli

if __name__ == "__main__":
    run_cli(main, "evaluate.py")
