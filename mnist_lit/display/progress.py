"""Callbacks for what the user sees in the terminal: an epoch progress bar and one line per epoch."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from tqdm import tqdm

from mnist_lit.display.tensorboard import CurvesLogger
from mnist_lit.interrupts import Terminated, explain
from mnist_lit.process.resources import job_seconds

log = logging.getLogger(__name__)


class EpochProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting epochs from 1 as the epoch lines do, redrawn at most every ``refresh_seconds``.

    A redraw every step would outweigh a small network's training step, so the training bar is drawn when
    ``refresh_seconds`` have passed since the last draw (checked in the public batch hook) and
    at the epoch's last batch; validation and test batches (1,000 images each) cost far more
    than a redraw, so their bars are drawn as Lightning draws them. Bars are shown only where
    stdout is a terminal (redirected logs get the epoch lines alone) and the job has the terminal
    to itself: the jobs of a parallel sweep (``jobs_at_once`` > 1) would draw over one another's.
    """

    def __init__(self, refresh_seconds: float = 0.25, jobs_at_once: int = 1) -> None:
        super().__init__(refresh_rate=1, leave=False)
        self.refresh_seconds = refresh_seconds
        self.jobs_at_once = jobs_at_once
        self.next_draw = 0.0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if not sys.stdout.isatty() or self.jobs_at_once > 1:
            self.disable()

    def due(self, bar: tqdm | None, n: int) -> bool:
        """Whether to draw ``bar`` at batch ``n``: the loop's last batch, or ``refresh_seconds`` since the last draw."""
        if bar is None or not self.is_enabled:
            return False
        now = time.monotonic()
        if n == bar.total or now >= self.next_draw:
            self.next_draw = now + self.refresh_seconds
            return True
        return False

    def init_train_tqdm(self) -> tqdm:
        bar = super().init_train_tqdm()
        bar.leave = False  # one bar for the whole fit; the epoch lines stay
        return bar

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning's own version names the epoch from 0; the epoch lines count from 1.
        of = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        bar = self.train_progress_bar
        bar.set_description_str(f"Epoch {trainer.current_epoch + 1}{of}", refresh=False)
        total = self.total_train_batches
        bar.total = None if isinstance(total, float) and math.isinf(total) else total  # tqdm: None = unknown
        bar.reset()
        self.next_draw = 0.0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.due(self.train_progress_bar, batch_idx + 1):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def init_test_tqdm(self) -> tqdm:
        bar = super().init_test_tqdm()
        bar.leave = False  # the run's last line gives the test accuracy
        return bar


class EpochSummary(L.Callback):
    """Prints one line of metrics per epoch and keeps their history (saved in checkpoints, for resuming).

    Validation metrics are recorded when validation ends, before ModelCheckpoint saves, so a
    checkpoint's history includes its own epoch. The line is printed when the next epoch starts
    (or training ends), because the LightningModule logs its training metrics after the
    callbacks' ``on_train_epoch_end``.
    """

    KEYS = ("train/loss", "train/acc", "val/loss", "val/acc")

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.startup_seconds: float | None = None  # job start to the first training epoch
        self._started = 0.0
        self._pending: dict[str, Any] | None = None

    def _record(self, epoch: int) -> dict[str, Any]:
        if not self.history or self.history[-1]["epoch"] != epoch:
            self.history.append({"epoch": epoch})
        return self.history[-1]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)
        if self.startup_seconds is None:
            self.startup_seconds = job_seconds()
        self._started = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        record = self._record(trainer.current_epoch + 1)
        if isinstance(trainer.logger, CurvesLogger) and "val/loss" in trainer.logger.steps:
            record["step"] = trainer.logger.steps["val/loss"]  # where TensorBoard plots this validation
        record.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = {"epoch": trainer.current_epoch + 1, "seconds": time.perf_counter() - self._started}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    def _flush(self, trainer: L.Trainer) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        record = self._record(pending["epoch"])
        record["seconds"] = pending["seconds"]
        record.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})
        if trainer.is_global_zero:
            with tqdm.external_write_mode():  # clears and redraws any live progress bar around the line
                log.info(self.format(record, trainer.max_epochs))

    @staticmethod
    def format(record: dict[str, Any], max_epochs: int | None) -> str:
        """``Epoch 3/20  train/loss 0.1234  train/acc 0.9650  val/loss ...  (2.1 s)``."""
        of = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
        values = "  ".join(f"{k} {record[k]:.4f}" for k in EpochSummary.KEYS if k in record)
        return f"Epoch {record['epoch']}{of}  {values}  ({record['seconds']:.1f} s)"

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(record) for record in state_dict.get("history", [])]


def latest_checkpoint(trainer: L.Trainer) -> str:
    """The path of the checkpoint written every epoch (the ModelCheckpoint without a monitor), or ""."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None and callback.best_model_path:
            return callback.best_model_path
    return ""


class ResumeHint(L.Callback):
    """On Ctrl-C or SIGTERM (a cluster pre-empting the job) during a fit, say which checkpoint resumes the run.

    The sentence joins the command's one line (mnist_lit.interrupts). ``last.ckpt`` is written at the end of
    every epoch; resuming from it restarts the interrupted epoch. A mid-epoch checkpoint is not written:
    Lightning does not restore the validation loop of a partly run epoch reliably, and ``save_on_exception``
    would also overwrite ``best.ckpt`` with an unvalidated state.
    """

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException, Terminated)) or not trainer.is_global_zero:
            return
        if trainer.state.fn != TrainerFn.FITTING:
            return  # testing a finished fit: mnist_lit.training says what it keeps
        last = latest_checkpoint(trainer)
        if last and os.path.isfile(last):
            explain(
                f"stopped during epoch {trainer.current_epoch + 1}; {last} holds epoch {trainer.current_epoch}: "
                f"resume with the same overrides plus ckpt_path={last}"
            )
        else:
            explain(f"stopped during epoch {trainer.current_epoch + 1}, before any epoch completed: nothing to resume")
