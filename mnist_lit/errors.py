"""Errors meant for the user: printed as one clear message, without a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

EXIT_STATUS = 2  # what a command returns for a user error (argparse's status for bad arguments)


class UserError(Exception):
    """A problem the user can fix; the entry points print it as one ``Error:`` line and exit with status 2."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work; the message names the key, the value and what is allowed."""


class OutputError(UserError):
    """An output that could not be written (a full disk); the previous file is left as it was."""


def report(error: UserError | str) -> None:
    """Print ``Error: <message>`` to stderr, the one form every command gives a user error in."""
    print(f"Error: {error}", file=sys.stderr)


def exit_with(error: UserError | str) -> NoReturn:
    """Print ``Error: <message>`` to stderr and exit with status 2 (the entry points' answer to bad input)."""
    report(error)
    sys.exit(EXIT_STATUS)
