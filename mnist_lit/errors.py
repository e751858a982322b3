"""Errors meant for the user: printed as one clear message, without a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key, the value and what is allowed."""


def exit_with(error: ConfigError) -> NoReturn:
    """Print ``Error: <message>`` to stderr and exit with status 2 (the entry points' answer to bad input)."""
    print(f"Error: {error}", file=sys.stderr)
    sys.exit(2)
