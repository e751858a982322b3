"""How every command starts and ends: ``@command(...)`` on its ``main`` (train.py, evaluate.py, ``python -m``).

The project's resolvers are registered (this module imports them) before Hydra composes the command's
config, conf/<config>.yaml; bad input (a UserError) ends in one ``Error:`` line and exit status 2;
Ctrl-C and SIGTERM end in one line saying what was kept (mnist_lit.interrupts). A job's UserError goes on to
Hydra instead where Hydra deals with it: in a multirun Hydra records that job as failed and the sweep goes on
(SystemExit would end the sweep; Hydra's grid sweeper gets the error as the job's return value, see
mnist_lit.sweeps.callbacks); a run with a run directory guard (train.py) is ended by the guard, which first
removes the folders the refused run made (mnist_lit.io.run_dir). What Hydra cannot compose (an option that no
config group has, an override it cannot apply) is bad input too: one ``Error:`` line, exit status 2.

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
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode

from mnist_lit.config import resolvers
from mnist_lit.errors import ConfigError, UserError, exit_with, not_utf8
from mnist_lit.interrupts import interruptible
from mnist_lit.io.atomic import name_error

F = TypeVar("F", bound=Callable[..., Any])
CONF = resolvers.PROJECT_ROOT / "conf"
GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
# Hydra's documented switch: what it cannot compose is raised, not printed as a block of text and exit status 1.
# Set (where the user has not) until a single run's job starts, so that the run's own errors show as Hydra shows
# them; a sweep's failed job (which Hydra raises once its batch is done) ends the sweep like bad input.
FULL_ERROR = "HYDRA_FULL_ERROR"
raised_until_job: list[bool] = []  # whether this process set FULL_ERROR


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


def check_command_line(argv: list[str], overrides: bool) -> None:
    """The working directory and the command line in UTF-8 (the names a command prints and writes must be text), and
    (``overrides``: Hydra's) each override one that Hydra's grammar reads and applies; ConfigError otherwise."""
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
    if overrides:
        check_overrides(argv)


def check_overrides(arguments: list[str]) -> None:
    """The command line's overrides (``key=value``, sweeps such as ``choice(...)`` included) read by Hydra's
    grammar before Hydra reads them (its own account is a block of text): ConfigError for one it cannot read, with
    Hydra's reason where a sweep expression is wrong, or else how to quote the value; so for ``group=null``, which
    Hydra cannot apply to a config group (it fails with a traceback)."""
    parser = OverridesParser.create()
    for arg in arguments:
        if "=" not in arg or arg.startswith("-"):
            continue  # Hydra's own flags (-m, --cfg job, ...)
        try:
            (override,) = parser.parse_overrides([arg])
        except OverrideParseException as e:
            key, _, value = arg.partition("=")
            why = str(e.__cause__)  # a sweep expression that Hydra reads but refuses: choice(), interval(0.5)
            if e.__cause__ is None:  # one its grammar cannot read
                why = (
                    "Hydra takes a value with spaces, non-ASCII letters or characters such as ' \" = only in quotes, "
                    f"inside the shell's: '{key}=\"{value}\"'"
                )
            raise ConfigError(f"{arg} cannot be read: {why} ({GRAMMAR})") from None
        group = override.key_or_group
        if not override.is_delete() and override.value() is None and (CONF / group).is_dir():
            raise ConfigError(f"{arg} is not allowed: a config group is left out with ~{group} (or {group}=[])")


def errors_as_set() -> None:
    """Hydra goes back to showing errors as the user set it to."""
    if raised_until_job:
        raised_until_job.clear()
        os.environ.pop(FULL_ERROR, None)


def composition_error(e: CompactHydraException) -> ConfigError:
    """What Hydra could not compose, in one line; for an option that a config group does not have, the key, the
    value and the options it has. (The command line's grammar is ``check_overrides``'.)"""
    text = " ".join(line.strip() for line in str(e).split("\n\n")[0].splitlines() if line.strip())
    missing = e.missing_cfg_file if isinstance(e, MissingConfigException) else None
    if missing and "/" in missing:
        group, _, name = missing.rpartition("/")
        options = e.options or sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        return ConfigError(f"{group}={name} is not allowed: choose from {', '.join(options)} ({text})")
    return ConfigError(text)


def composed_or_refused(hydra_main: Callable[..., Any]) -> Callable[..., Any]:
    """``hydra_main`` (a ``hydra.main`` function), with what Hydra cannot compose from the command line ending in
    one ``Error:`` line (what it cannot read is ``check_command_line``'s, before)."""

    @functools.wraps(hydra_main)
    def run(*args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # a config given to the function: Hydra composes none
            return hydra_main(*args, **kwargs)
        try:
            if FULL_ERROR not in os.environ:
                os.environ[FULL_ERROR] = "1"
                raised_until_job.append(True)
            return hydra_main()
        except (CompactHydraException, UserError) as e:  # a UserError here: a parallel sweep's failed job
            exit_with(composition_error(e) if isinstance(e, CompactHydraException) else e)
        finally:
            errors_as_set()

    return run


def command(interrupted: str, config: str | None = None) -> Callable[[F], F]:
    """Wrap a command's ``main``: Hydra composes conf/<``config``>.yaml for it (None: a command that parses its own
    arguments); ``interrupted`` is what an interruption's line says where the code that ran gave no reason."""

    def wrap(main: F) -> F:
        @functools.wraps(main)  # Hydra names the job and its log file after ``main``'s own file
        def run(*args: Any, **kwargs: Any) -> Any:
            if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN:
                errors_as_set()  # a single run's config is composed
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
            run = composed_or_refused(hydra.main(version_base="1.3", config_path=str(CONF), config_name=config)(run))

        @functools.wraps(run)
        def started(*args: Any, **kwargs: Any) -> Any:
            if not args and not kwargs:  # the command line's, which Hydra or argparse reads next
                own_output()
                try:
                    check_command_line(sys.argv[1:], overrides=config is not None)
                except ConfigError as e:
                    exit_with(e)
            return run(*args, **kwargs)

        return interruptible(started, interrupted)  # type: ignore[return-value]

    return wrap
