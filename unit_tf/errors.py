"""User-facing errors: one clear line, a non-zero exit code, no traceback."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

#: Exit code for bad input (flags, config, data) — the argparse convention.
USAGE_EXIT_CODE = 2


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""

    exit_code = USAGE_EXIT_CODE


class TrainingDiverged(UserError):
    """A loss became non-finite; the last good checkpoint is kept."""

    exit_code = 3


class TrainingInterrupted(Exception):
    """SIGINT / SIGTERM arrived; a checkpoint was saved. Exit code 128 + signal number (130 / 143)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def run_cli(main: Callable[[], int | None], prog: str) -> None:
    """Run a command-line entry point, turning a UserError into one line on stderr and its exit code."""
    try:
        code = main()
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except TrainingInterrupted as err:
        print(f"{prog}: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    sys.exit(code or 0)
