"""User-facing errors: one clear line, a non-zero exit code, no traceback."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

#: Exit code for bad input (flags, config, data) — the argparse convention.
USAGE_EXIT_CODE = 2
#: Set in a command restarted by run_cli (RestartInEnvironment): it restarts at most once.
RESTARTED_ENV = "UNIT_RESTARTED"


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""

    exit_code = USAGE_EXIT_CODE


class RestartInEnvironment(UserError):
    """A problem the command fixes by running again, from the start, in a changed environment (raised before
    anything is written): run_cli restarts the same command line once with `changes` (None: unset); anywhere
    else it is the UserError its message describes."""

    def __init__(self, message: str, changes: dict[str, str | None]) -> None:
        super().__init__(message)
        self.changes = changes


class TrainingDiverged(UserError):
    """A loss became non-finite; the last good checkpoint is kept."""

    exit_code = 3


class TrainingInterrupted(Exception):
    """SIGINT / SIGTERM arrived; a checkpoint was saved. Exit code 128 + signal number (130 / 143)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def _restart(changes: dict[str, str | None]) -> None:
    """Replace this process by the same command line in the environment with `changes` (None: unset)."""
    env = {**os.environ, RESTARTED_ENV: "1"}
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def run_cli(main: Callable[[], int | None], prog: str) -> None:
    """Run a command-line entry point, turning a UserError into one line on stderr and its exit code (a
    RestartInEnvironment restarts the same command line once, in the changed environment, instead)."""
    try:
        code = main()
    except UserError as err:
        if isinstance(err, RestartInEnvironment) and os.environ.get(RESTARTED_ENV) != "1":
            _restart(err.changes)
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except TrainingInterrupted as err:
        print(f"{prog}: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    sys.exit(code or 0)
