"""How every command ends on Ctrl-C (SIGINT) or SIGTERM: one line saying what was kept, exit status 130 or 143.

Each entry point is wrapped in ``interruptible(...)``. It makes SIGTERM raise ``Terminated`` in the main
thread, as Ctrl-C raises KeyboardInterrupt, so ``finally`` blocks and the atomic writers (mnist_lit/io/atomic.py)
clean up; it then prints ``Interrupted (Ctrl-C): <what was kept and how to go on>`` to stderr, with no
traceback, and exits with the shell's status for the signal (128 + its number). The code that runs says what
an interruption keeps: ``with explained(...)`` around a phase, ``explain(...)`` from a callback, and
``when_interrupted(...)`` for work that must be done once the command has stopped (a sweep's summary).

A running Lightning Trainer installs its own SIGTERM handler, which calls the one it replaced after its own:
then ``Terminated`` is not raised in the middle of a batch; Lightning stops at the end of the batch with its
SIGTERMException, and ``raise_pending()`` raises ``Terminated`` for a SIGTERM that Lightning let pass (one that
came during the last batch of a loop).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}  # what the line calls each signal


def exit_status(signum: int) -> int:
    """The shell's status for a command ended by ``signum``: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


class Terminated(BaseException):
    """SIGTERM, raised in the main thread; a BaseException, as KeyboardInterrupt is, so ``except Exception``
    does not swallow it."""


class State:
    """What the running command has said about an interruption, and a SIGTERM not acted on yet."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A command starts: nothing said yet."""
        self.reasons: list[str] = []  # innermost phase first
        self.hooks: list[Callable[[str], str | None]] = []
        self.pending = False


state = State()


def terminate() -> NoReturn:
    """Raise ``Terminated`` (and forget any pending SIGTERM: this is the one acted on)."""
    state.pending = False
    raise Terminated


def on_sigterm(signum: int, frame: Any) -> None:
    """The SIGTERM handler: raise ``Terminated``, unless another handler chained this one (see the module)."""
    if signal.getsignal(signal.SIGTERM) is not on_sigterm:
        state.pending = True  # a Lightning Trainer's handler ran first and stops the loop at the end of the batch
        return
    terminate()


def raise_pending() -> None:
    """Raise ``Terminated`` if a SIGTERM came while another handler had the signal and nothing acted on it."""
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
        text = reason() if callable(reason) else reason
        if text:
            explain(text)
        raise


def when_interrupted(hook: Callable[[str], str | None]) -> None:
    """Call ``hook(line so far)`` once the command has stopped on an interruption; what it returns joins the line."""
    state.hooks.append(hook)


def identity(path: Path) -> tuple[int, int] | None:
    """What tells a file or folder apart from the one it replaced (inode and change time), or None if absent."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_ctime_ns


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
    said = "; ".join(state.reasons) or "stopped"
    return f"Interrupted ({SIGNALS[signum]}): {said}"


def interruptible(default: str = "") -> Callable[[F], F]:
    """Wrap a command's entry point: SIGTERM raises ``Terminated``; Ctrl-C and SIGTERM end it with one line, 130/143.

    ``default`` is the line's reason where the code that ran gave none. A UserError, any other error and
    SystemExit pass through unchanged.
    """

    def wrap(main: F) -> F:
        @functools.wraps(main)
        def run(*args: Any, **kwargs: Any) -> Any:
            state.reset()
            previous = signal.signal(signal.SIGTERM, on_sigterm)
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                end(signal.SIGINT, default)
            except Terminated:
                end(signal.SIGTERM, default)
            finally:
                signal.signal(signal.SIGTERM, previous)

        return run  # type: ignore[return-value]

    return wrap


def end(signum: int, default: str) -> NoReturn:
    """Run the hooks, print the line and exit; a second Ctrl-C or SIGTERM meanwhile is ignored."""
    before = {s: signal.signal(s, signal.SIG_IGN) for s in SIGNALS}
    try:
        for hook in state.hooks:
            explain(hook(line(signum)) or "")
        if default and not state.reasons:
            explain(default)
        print(line(signum), file=sys.stderr, flush=True)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    raise SystemExit(exit_status(signum))
