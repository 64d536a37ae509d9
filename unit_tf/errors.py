"""User-facing errors: one clear line, a non-zero exit code, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

#: Exit code for bad input (flags, config, data) — the argparse convention.
USAGE_EXIT_CODE = 2


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


def run_cli(main: Callable[[], int | None], prog: str) -> None:
    """Run a command-line entry point, turning a UserError into one line on stderr and exit 2."""
    try:
        code = main()
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
