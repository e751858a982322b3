"""How every command starts and ends: ``@command(...)`` on its ``main`` (train.py, evaluate.py, ``python -m``).

The project's resolvers are registered (this module imports them) before Hydra composes the command's
config, conf/<config>.yaml; bad input (a UserError) ends in one ``Error:`` line and exit status 2;
Ctrl-C and SIGTERM end in one line saying what was kept (mnist_lit.interrupts). A job's UserError goes on to
Hydra instead where Hydra deals with it: in a multirun Hydra records that job as failed and the sweep goes on
(SystemExit would end the sweep); a run with a run directory guard (train.py) is ended by the guard, which first
removes the folders the refused run made (mnist_lit.io.run_dir).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from mnist_lit.config import resolvers
from mnist_lit.errors import UserError, exit_with
from mnist_lit.interrupts import interruptible

F = TypeVar("F", bound=Callable[..., Any])
CONF = resolvers.PROJECT_ROOT / "conf"


def left_to_hydra() -> bool:
    """Whether a job's UserError goes on to Hydra: a multirun's job, or a run that a run directory guard ends."""
    if not HydraConfig.initialized():
        return False
    job = HydraConfig.get()
    return job.mode == RunMode.MULTIRUN or "run_directory_guard" in (job.get("callbacks") or {})


def check_overrides(arguments: list[str]) -> None:
    """The command line's overrides (``key=value``, sweeps such as ``choice(...)`` included) read by Hydra's
    grammar before Hydra reads them: one it cannot read ends in the one ``Error:`` line, not Hydra's block."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for line in arguments:
        if "=" not in line or line.startswith("-"):
            continue  # Hydra's own flags (-m, --cfg job, ...)
        try:
            parser.parse_overrides([line])
        except OverrideParseException as e:
            quote = "it is no key=value of Hydra's grammar (quote a value with spaces, accents or signs: key='a b')"
            why = str(e.__cause__) if e.__cause__ else quote
            exit_with(f"{line} cannot be read: {why} (https://hydra.cc/docs/advanced/override_grammar/basic/)")


def command(interrupted: str, config: str | None = None) -> Callable[[F], F]:
    """Wrap a command's ``main``: Hydra composes conf/<``config``>.yaml for it (None: a command that parses its own
    arguments); ``interrupted`` is what an interruption's line says where the code that ran gave no reason."""

    def wrap(main: F) -> F:
        @functools.wraps(main)  # Hydra names the job and its log file after ``main``'s own file
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return main(*args, **kwargs)
            except UserError as e:
                if config is not None and left_to_hydra():
                    raise
                exit_with(e)

        if config is not None:
            hydra_main = hydra.main(version_base="1.3", config_path=str(CONF), config_name=config)(run)

            @functools.wraps(hydra_main)
            def run(*args: Any, **kwargs: Any) -> Any:
                if not args and not kwargs:  # the command line's, which Hydra reads next
                    check_overrides(sys.argv[1:])
                return hydra_main(*args, **kwargs)

        return interruptible(interrupted)(run)  # type: ignore[return-value]

    return wrap
