"""Errors meant for the user: printed as one clear message, without a traceback."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

EXIT_STATUS = 2  # what a command returns for a user error (argparse's status for bad arguments)


class UserError(Exception):
    """A problem the user can fix; the entry points print it as one ``Error:`` line and exit with status 2."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work; the message names the key, the value and what is allowed."""


class OutputError(UserError):
    """An output that could not be written (a full disk, someone else's file in its place); what was there is
    left as it was."""


def describe(error: BaseException, limit: int = 200) -> str:
    """An exception in one line: its type and the first non-empty line of its message, cut at ``limit``
    characters. Never raises, whatever the exception holds (an empty message, a failing ``__str__``)."""
    try:
        text = str(error)
    except Exception:
        text = ""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    name = type(error).__name__
    return f"{name}: {line}" if line else name


def not_utf8(text: str) -> str | None:
    """``text`` with each byte that is not UTF-8 shown as ``\\xff``, where it holds such bytes (Python reads file names
    and the command line with surrogateescape); None where it is UTF-8 text."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return os.fsencode(text).decode(errors="backslashreplace")
    return None


def report(error: UserError | str) -> None:
    """Print ``Error: <message>`` to stderr, the one form every command gives a user error in."""
    print(f"Error: {error}", file=sys.stderr)


def exit_with(error: UserError | str) -> NoReturn:
    """Print ``Error: <message>`` to stderr and exit with status 2 (the entry points' answer to bad input)."""
    report(error)
    sys.exit(EXIT_STATUS)
