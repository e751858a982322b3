"""A run's history: each epoch's logged metrics and training time, what ``metrics.json``'s ``history`` holds."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from mnist_lit.display.tensorboard import CurvesLogger
from mnist_lit.process.resources import job_seconds


def logged(trainer: L.Trainer, stage: str) -> dict[str, float]:
    """The latest values of the metrics the module logged for ``stage`` (``train``, ``val``)."""
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{stage}/")}


class EpochHistory(L.Callback):
    """Records each epoch's logged metrics; saved in checkpoints, so a resumed run's history goes on.

    Validation metrics are recorded when validation ends, before ModelCheckpoint saves, so a
    checkpoint's history includes its own epoch. Training metrics are recorded when the next epoch
    starts (or training ends), because the LightningModule logs them after the callbacks'
    ``on_train_epoch_end``.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.startup_seconds: float | None = None  # job start to the first training epoch
        self.started = 0.0
        self.unfinished = False  # whether the last epoch's training metrics are still to be recorded

    def record(self, epoch: int) -> dict[str, Any]:
        """The record of ``epoch`` (counted from 1), begun if it is new."""
        if not self.history or self.history[-1]["epoch"] != epoch:
            self.history.append({"epoch": epoch})
        return self.history[-1]

    def finish(self, trainer: L.Trainer) -> None:
        """Add the training metrics the module logged at the end of the latest epoch to its record, once.

        The module logs them after the callbacks' ``on_train_epoch_end``: call this from ``on_train_epoch_start``
        or ``on_train_end``."""
        if self.unfinished:
            self.unfinished = False
            self.history[-1].update(logged(trainer, "train"))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.finish(trainer)
        if self.startup_seconds is None:
            self.startup_seconds = job_seconds()
        self.started = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        record = self.record(trainer.current_epoch + 1)
        curves = next((logger for logger in trainer.loggers if isinstance(logger, CurvesLogger)), None)
        if curves is not None and "val/loss" in curves.steps:
            record["step"] = curves.steps["val/loss"]  # where the loggers plot this validation
        record.update(logged(trainer, "val"))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record(trainer.current_epoch + 1)["seconds"] = time.perf_counter() - self.started
        self.unfinished = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.finish(trainer)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Checkpoints saved before the history had a callback of its own keep it under the epoch lines' callback;
        # Lightning loads this callback's own state after this hook, so a newer checkpoint's wins.
        legacy = checkpoint.get("callbacks", {}).get("EpochSummary")
        if legacy:
            self.load_state_dict(legacy)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(record) for record in state_dict.get("history", [])]
