"""How every command starts and ends: ``@command(...)`` on its ``main`` (train.py, evaluate.py, ``python -m``).

The project's resolvers are registered (this module imports them) before Hydra composes the command's
config, conf/<config>.yaml; bad input (a UserError) ends in one ``Error:`` line and exit status 2;
Ctrl-C and SIGTERM end in one line saying what was kept (mnist_lit.interrupts). A job's UserError goes on to
Hydra instead where Hydra deals with it: in a multirun Hydra records that job as failed and the sweep goes on
(SystemExit would end the sweep; Hydra's grid sweeper gets the error as the job's return value, see
mnist_lit.sweeps.callbacks); a run with a run directory guard (train.py) is ended by the guard, which first
removes the folders the refused run made (mnist_lit.io.run_dir).

Before Hydra reads the command line: a closed stdout or stderr (``>&-``) becomes /dev/null, a reader of stdout
that has gone (``| head``) ends the command quietly, and what Hydra or the outputs cannot take is refused in one
line (bytes that are not UTF-8, an override Hydra's grammar cannot read).
"""

from __future__ import annotations

import errno
import functools
import io
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException

from mnist_lit.config import resolvers
from mnist_lit.errors import ConfigError, UserError, exit_with, not_utf8
from mnist_lit.interrupts import interruptible
from mnist_lit.io.atomic import name_error

F = TypeVar("F", bound=Callable[..., Any])
CONF = resolvers.PROJECT_ROOT / "conf"
GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
# Hydra's flags that choose another config than the command's own
CONFIG_FLAGS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd")


def left_to_hydra() -> bool:
    """Whether a job's UserError goes on to Hydra: a multirun's job, or a run that a run directory guard ends."""
    if not HydraConfig.initialized():
        return False
    job = HydraConfig.get()
    return job.mode == RunMode.MULTIRUN or "run_directory_guard" in (job.get("callbacks") or {})


def returned_to_sweep() -> bool:
    """Whether a refused job gives its UserError to its sweep as its return value: a job of Hydra's grid sweeper."""
    from mnist_lit.sweeps.callbacks import BASIC_SWEEPER  # here: a command that is not refused need not load it

    job = HydraConfig.get()
    return job.mode == RunMode.MULTIRUN and job.sweeper.get("_target_") == BASIC_SWEEPER


class Output(io.TextIOWrapper):
    """stdout that ends the command once its reader has gone (``| head``), quietly and with SIGPIPE's exit status, as
    Unix tools do. Python ignores SIGPIPE, so a write then raises BrokenPipeError (Python's documentation of signal,
    "Note on SIGPIPE"); caught here, in every write, it is caught in Hydra's own printing (``--help``) too."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except BrokenPipeError:
            reader_gone()

    def flush(self) -> None:
        try:
            super().flush()
        except BrokenPipeError:
            reader_gone()


def reader_gone() -> NoReturn:
    # What is left to flush, now and at exit, goes to /dev/null rather than raise BrokenPipeError again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(128 + signal.SIGPIPE)


def own_output() -> None:
    """A closed stdout or stderr becomes /dev/null; the terminal's or a pipe's stdout an ``Output``."""
    out = sys.stdout
    if type(out) is io.TextIOWrapper:  # not a test's capture
        out.flush()
        raw = open(out.fileno(), "wb", buffering=0 if out.write_through else -1, closefd=False)  # noqa: SIM115
        sys.stdout = Output(raw, out.encoding, out.errors, None, out.line_buffering, out.write_through)
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115  (open for as long as the command runs)


def check_command_line(argv: list[str], config: str | None) -> None:
    """The working directory and the command line in UTF-8 (the names a command prints and writes must be text), and
    (``config``: the command's Hydra config) each override one that Hydra's grammar reads, each group's option one
    that the group has; ConfigError otherwise."""
    cwd = not_utf8(os.getcwd())
    if cwd is not None:
        raise ConfigError(
            f"the working directory {cwd} is not allowed: its path is not UTF-8 text, and the names this command "
            "prints and writes must be. Run it from a folder whose path is UTF-8"
        )
    for arg in argv:
        shown = not_utf8(arg)
        if shown is not None:
            raise ConfigError(
                f"{shown} is not allowed: it is not UTF-8 text, and the names this command prints and writes must "
                "be. Rename the file or folder"
            )
    if config is not None:
        check_options(config, argv, check_overrides(argv))


def check_overrides(arguments: list[str]) -> list[Override]:
    """The command line's overrides (``key=value``, sweeps such as ``choice(...)`` included) read by Hydra's
    grammar before Hydra reads them (its own account is a block of text): ConfigError for one it cannot read, with
    Hydra's reason where a sweep expression is wrong, or else how to quote the value. Returns them, parsed."""
    parser = OverridesParser.create()
    parsed = []
    for arg in arguments:
        if "=" not in arg or arg.startswith("-"):
            continue  # Hydra's own flags (-m, --cfg job, ...)
        try:
            parsed += parser.parse_overrides([arg])
        except OverrideParseException as e:
            key, _, value = arg.partition("=")
            why = str(e.__cause__)  # a sweep expression that Hydra reads but refuses: choice(), interval(0.5)
            if e.__cause__ is None:  # one its grammar cannot read
                why = (
                    "Hydra takes a value with spaces, non-ASCII letters or characters such as ' \" = only in quotes, "
                    f"inside the shell's: '{key}=\"{value}\"'"
                )
            raise ConfigError(f"{arg} cannot be read: {why} ({GRAMMAR})") from None
    return parsed


def unknown_option(error: MissingConfigException) -> ConfigError | None:
    """Hydra's account of a config group given an option it does not have (a block of text that lists the group's
    options) as the one line that names them; None for another missing config."""
    if not error.options or not error.missing_cfg_file:
        return None
    group, _, option = error.missing_cfg_file.rpartition("/")
    return ConfigError(f"{group}={option} is not allowed: choose one of {', '.join(error.options)}")


def check_options(config: str, argv: list[str], overrides: list[Override]) -> None:
    """Each ``group=option`` of the command line names an option of its group: conf/<``config``>.yaml composed as
    Hydra composes it, with the command line's overrides except its sweeps (each sweeper checks its own values).
    ConfigError for an unknown option; any other error is left to Hydra, which composes the same config next."""
    if not overrides or any(arg.split("=")[0] in CONFIG_FLAGS for arg in argv):
        return  # nothing to compose, or another config than the command's own: Hydra reads it
    lines = [o.input_line for o in overrides if not o.is_sweep_override() and o.input_line]
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            compose(config, lines, return_hydra_config=True)
    except MissingConfigException as e:
        refusal = unknown_option(e)
        if refusal is not None:
            raise refusal from None
    except (HydraException, OmegaConfBaseException):
        pass


def command(interrupted: str, config: str | None = None) -> Callable[[F], F]:
    """Wrap a command's ``main``: Hydra composes conf/<``config``>.yaml for it (None: a command that parses its own
    arguments); ``interrupted`` is what an interruption's line says where the code that ran gave no reason."""

    def wrap(main: F) -> F:
        @functools.wraps(main)  # Hydra names the job and its log file after ``main``'s own file
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                try:
                    return main(*args, **kwargs)
                except OSError as e:  # a path the command was given that this system cannot hold
                    if e.errno != errno.ENAMETOOLONG or not e.filename:
                        raise
                    reason = name_error(Path(e.filename)) or e.strerror
                    raise ConfigError(f"{e.filename} cannot be used: {reason}") from None
            except UserError as e:
                if config is None or not left_to_hydra():
                    exit_with(e)
                if returned_to_sweep():
                    return e
                raise

        if config is not None:
            run = hydra.main(version_base="1.3", config_path=str(CONF), config_name=config)(run)

        @functools.wraps(run)
        def started(*args: Any, **kwargs: Any) -> Any:
            if not args and not kwargs:  # the command line's, which Hydra or argparse reads next
                own_output()
                try:
                    check_command_line(sys.argv[1:], config)
                except ConfigError as e:
                    exit_with(e)
            return run(*args, **kwargs)

        return interruptible(interrupted)(started)  # type: ignore[return-value]

    return wrap
