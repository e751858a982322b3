"""How every command ends on Ctrl-C (SIGINT) or SIGTERM: one line saying what was kept, exit status 130 or 143.

``interruptible(...)`` wraps each entry point: SIGTERM raises ``Terminated`` in the main thread, as Ctrl-C raises
KeyboardInterrupt, so ``finally`` blocks and the atomic writers (mnist_lit/io/atomic.py) clean up; then it prints
``Interrupted (Ctrl-C): <what was kept and how to go on>`` to stderr, without a traceback, and exits with the
shell's status for the signal (128 + its number). The code that runs says what an interruption keeps: ``with
explained(...)`` around a phase, ``explain(...)`` from a callback, and ``when_interrupted(...)`` for work done
once the command has stopped (a sweep's summary).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}  # what the line calls each signal


class Terminated(BaseException):
    """SIGTERM, raised in the main thread; a BaseException, as KeyboardInterrupt is, so ``except Exception``
    does not swallow it."""


@dataclasses.dataclass
class State:
    """What the running command has said about an interruption, and a SIGTERM not acted on yet."""

    reasons: list[str] = dataclasses.field(default_factory=list)  # innermost phase first
    hooks: list[Callable[[str], str | None]] = dataclasses.field(default_factory=list)
    pending: bool = False


state = State()


def terminate() -> NoReturn:
    """Raise ``Terminated`` (and forget any pending SIGTERM: this is the one acted on)."""
    state.pending = False
    raise Terminated


def on_sigterm(signum: int, frame: Any) -> None:
    """The SIGTERM handler: raise ``Terminated``. A running Lightning Trainer's handler calls this one after its own
    and stops at the end of the batch: then the SIGTERM is only noted, for ``raise_pending``."""
    if signal.getsignal(signal.SIGTERM) is on_sigterm:
        terminate()
    state.pending = True


def raise_pending() -> None:
    """Raise ``Terminated`` for a SIGTERM that Lightning let pass (one in the last batch of a loop)."""
    if state.pending:
        terminate()


def explain(reason: str) -> None:
    """Add ``reason`` (what was kept, how to go on) to the line of the interruption being handled."""
    if reason and reason not in state.reasons:
        state.reasons.append(reason)


@contextlib.contextmanager
def explained(reason: str | Callable[[], str | None]) -> Iterator[None]:
    """While the block runs, an interruption's line says ``reason`` (a callable is asked when it happens)."""
    try:
        yield
    except (KeyboardInterrupt, Terminated):
        explain((reason() if callable(reason) else reason) or "")
        raise


def when_interrupted(hook: Callable[[str], str | None]) -> None:
    """Call ``hook(line so far)`` once the command has stopped on an interruption; what it returns joins the line."""
    state.hooks.append(hook)


def identity(path: Path) -> tuple[int, int] | None:
    """What tells a file or folder apart from the one it replaced (inode and change time), or None if absent."""
    with contextlib.suppress(OSError):
        found = path.stat()
        return found.st_ino, found.st_ctime_ns
    return None


def watch(path: str | os.PathLike, what: str) -> None:
    """Make an interruption's line say whether ``path`` (the command's ``what``, written whole) was replaced."""
    path = Path(path).expanduser().absolute()
    before = identity(path)

    def state_of(_: str) -> str:
        now = identity(path)
        if now is not None and now != before:
            return f"the new {what} {path} is written whole"
        if before is not None:
            return f"nothing written: the previous {what} {path} is unchanged"
        return f"nothing written: no {what} at {path}"

    when_interrupted(state_of)


def line(signum: int) -> str:
    """``Interrupted (Ctrl-C): <reasons>``."""
    return f"Interrupted ({SIGNALS[signum]}): {'; '.join(state.reasons) or 'stopped'}"


def interruptible(main: F, default: str = "") -> F:
    """A command's entry point ``main`` with SIGTERM raising ``Terminated``, and Ctrl-C and SIGTERM ending it with one
    line and 130 / 143 (``default``: the line's reason where the code that ran gave none). Anything else passes."""

    @functools.wraps(main)
    def run(*args: Any, **kwargs: Any) -> Any:
        global state
        state = State()  # a command starts: nothing said yet
        previous = {s: signal.getsignal(s) for s in SIGNALS}
        signal.signal(signal.SIGTERM, on_sigterm)
        try:
            return main(*args, **kwargs)
        except (KeyboardInterrupt, Terminated) as e:
            signum = signal.SIGINT if isinstance(e, KeyboardInterrupt) else signal.SIGTERM
            for s in SIGNALS:
                signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C or SIGTERM while the line is made
            for hook in state.hooks:
                explain(hook(line(signum)) or "")
            if not state.reasons:
                explain(default)
            print(line(signum), file=sys.stderr, flush=True)
            raise SystemExit(128 + signum) from None
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    return run  # type: ignore[return-value]
