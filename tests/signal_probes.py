"""What tests add to the real commands to signal them at a chosen moment, from inside the process itself.

``SignalAt`` is a Lightning callback for ``python train.py +callbacks.signal._target_=tests.signal_probes.SignalAt
+callbacks.signal.signal_name=SIGTERM +callbacks.signal.hook=on_test_batch_start``. ``python -m tests.signal_probes
SIGINT <module>:<function> <n> <script.py or module> [args...]`` runs a command as ``python <script.py>`` or
``python -m <module>`` would, with ``<function>`` sending the signal to the process at its n-th call.
"""

from __future__ import annotations

import importlib
import os
import runpy
import signal
import sys
from typing import Any

import lightning as L

HOOKS = ("on_train_batch_start", "on_validation_batch_start", "on_test_batch_start", "on_train_epoch_end")


class SignalAt(L.Callback):
    """Sends ``signal_name`` (SIGINT, SIGTERM) to its own process at the first call of ``hook`` (``never``: none) in
    epoch ``epoch`` (counted from 1) or later; with ``armed`` (a file), only while that file exists, so that the same
    command runs unsignalled once a test has removed it."""

    def __init__(self, signal_name: str = "SIGINT", hook: str = "never", epoch: int = 1, armed: str = "") -> None:
        if hook not in (*HOOKS, "never"):
            raise ValueError(f"hook={hook!r}: one of {HOOKS} or never")
        self.signum = getattr(signal, signal_name)
        self.hook, self.epoch, self.armed = hook, epoch, armed
        self.sent = False

    def send(self, hook: str, trainer: L.Trainer) -> None:
        if hook != self.hook or self.sent or trainer.current_epoch + 1 < self.epoch:
            return
        if not self.armed or os.path.exists(self.armed):
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.send("on_train_batch_start", trainer)

    def on_validation_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if not trainer.sanity_checking:
            self.send("on_validation_batch_start", trainer)

    def on_test_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.send("on_test_batch_start", trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.send("on_train_epoch_end", trainer)


def resolve(target: str) -> tuple[Any, str]:
    """``package.module:Class.attribute`` -> (the object holding the attribute, its name)."""
    module, _, path = target.partition(":")
    owner: Any = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


def main(argv: list[str]) -> None:
    """Patch the function to signal at its n-th call, then run the command with the remaining arguments."""
    signum, target, nth, entry, *args = argv
    owner, name = resolve(target)
    original = getattr(owner, name)
    calls = 0

    def signalling(*a: Any, **k: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == int(nth):
            os.kill(os.getpid(), getattr(signal, signum))
        return original(*a, **k)

    setattr(owner, name, signalling)
    sys.argv = [entry, *args]
    if entry.endswith(".py"):  # a script, as python <script> runs it
        runpy.run_path(entry, run_name="__main__")
    else:  # a module, as python -m <module> runs it
        runpy.run_module(entry, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
