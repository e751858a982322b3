"""How every command starts and ends: ``@command(...)`` on its ``main`` (train.py, evaluate.py, ``python -m``).

The project's resolvers are registered (this module imports them) before Hydra composes the command's
config, conf/<config>.yaml; bad input (a UserError) ends in one ``Error:`` line and exit status 2;
Ctrl-C and SIGTERM end in one line saying what was kept (mnist_lit.interrupts). A job's UserError goes on to
Hydra instead where Hydra deals with it: in a multirun Hydra records that job as failed and the sweep goes on
(SystemExit would end the sweep); a run with a run directory guard (train.py) is ended by the guard, which first
removes the folders the refused run made (mnist_lit.io.run_dir). What Hydra cannot compose (an option that no
config group has, an override it cannot parse) is bad input too: one ``Error:`` line, exit status 2.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode

from mnist_lit.config import resolvers
from mnist_lit.errors import ConfigError, UserError, exit_with
from mnist_lit.interrupts import interruptible

F = TypeVar("F", bound=Callable[..., Any])
CONF = resolvers.PROJECT_ROOT / "conf"
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


def check_overrides(arguments: list[str]) -> None:
    """The command line's overrides (``key=value``, sweeps such as ``choice(...)`` included) read by Hydra's
    grammar before Hydra reads them: one it cannot read ends in the one ``Error:`` line, not Hydra's block; so
    does ``group=null``, which Hydra cannot apply to a config group (it fails with a traceback)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for line in arguments:
        if "=" not in line or line.startswith("-"):
            continue  # Hydra's own flags (-m, --cfg job, ...)
        try:
            (override,) = parser.parse_overrides([line])
        except OverrideParseException as e:
            quote = "it is no key=value of Hydra's grammar (quote a value with spaces, accents or signs: key='a b')"
            why = str(e.__cause__) if e.__cause__ else quote
            exit_with(f"{line} cannot be read: {why} (https://hydra.cc/docs/advanced/override_grammar/basic/)")
        group = override.key_or_group
        if not override.is_delete() and override.value() is None and (CONF / group).is_dir():
            exit_with(f"{line} is not allowed: a config group is left out with ~{group} (or {group}=[])")


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
    """``hydra_main`` (a ``hydra.main`` function), with what Hydra cannot read or compose from the command line
    ending in one ``Error:`` line."""

    @functools.wraps(hydra_main)
    def run(*args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # a config given to the function: Hydra composes none
            return hydra_main(*args, **kwargs)
        check_overrides(sys.argv[1:])  # the command line's, which Hydra reads next
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
                return main(*args, **kwargs)
            except UserError as e:
                if config is not None and left_to_hydra():
                    raise
                exit_with(e)

        if config is not None:
            run = composed_or_refused(hydra.main(version_base="1.3", config_path=str(CONF), config_name=config)(run))
        return interruptible(interrupted)(run)  # type: ignore[return-value]

    return wrap
