"""Errors meant for the user: printed as one clear message, without a traceback."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key, the value and what is allowed."""
