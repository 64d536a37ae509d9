"""The `unit-tf` console command: `unit-tf train | evaluate | translate | export | classify [flags]`, the same
commands as `python train.py`, `python evaluate.py` and `python -m unit_tf.translate | export | classify`."""

from __future__ import annotations

import importlib
import sys

from unit_tf.errors import UserError, run_cli

#: Subcommand -> (module with main(argv, prog), one-line help).
COMMANDS = {
    "train": ("unit_tf.commands.train", "train UNIT on two unpaired image domains (python train.py)"),
    "evaluate": ("unit_tf.commands.evaluate", "measure a run or an exported model (python evaluate.py)"),
    "translate": ("unit_tf.translate", "translate image files with a run or an export"),
    "export": ("unit_tf.export", "export a run as a SavedModel for TensorFlow Serving"),
    "classify": ("unit_tf.classify", "classify image files with an exported domain-adaptation model"),
}
USAGE = "usage: unit-tf {" + ",".join(COMMANDS) + "} [flags]   (unit-tf COMMAND --help for its flags)\n\n" + "\n".join(
    f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        raise UserError(f"unknown command {name!r}; choose one of {', '.join(COMMANDS)} (unit-tf --help)")
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest, prog=f"unit-tf {name}")


def run() -> None:
    """The console-script entry point (pyproject.toml)."""
    run_cli(main, "unit-tf")
