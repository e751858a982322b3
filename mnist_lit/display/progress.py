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

from mnist_lit.errors import ConfigError
from mnist_lit.history import EpochHistory
from mnist_lit.interrupts import Terminated, explain

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
    """Prints one line per epoch: its record in the run's EpochHistory (``callbacks.epoch_history``).

    The line is printed when the next epoch starts (or training ends), once the history holds the
    training metrics that the LightningModule logs after the callbacks' ``on_train_epoch_end``.
    """

    KEYS = ("train/loss", "train/acc", "val/loss", "val/acc")

    def __init__(self) -> None:
        self.history: EpochHistory | None = None
        self.due = False  # an epoch ended and its line is not printed yet

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.history = next((cb for cb in trainer.callbacks if isinstance(cb, EpochHistory)), None)
        if self.history is None:
            raise ConfigError(
                "callbacks.epoch_summary is not allowed without callbacks.epoch_history: it prints the epochs "
                "that mnist_lit.history.EpochHistory records; keep callbacks.epoch_history or set "
                "callbacks.epoch_summary=null"
            )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.due = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.show(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.show(trainer)

    def show(self, trainer: L.Trainer) -> None:
        """Print the line of the epoch that ended last, if it is due."""
        if not self.due:
            return
        self.due = False
        self.history.finish(trainer)
        if trainer.is_global_zero:
            with tqdm.external_write_mode():  # clears and redraws any live progress bar around the line
                log.info(self.format(self.history.history[-1], trainer.max_epochs))

    @staticmethod
    def format(record: dict[str, Any], max_epochs: int | None) -> str:
        """``Epoch 3/20  train/loss 0.1234  train/acc 0.9650  val/loss ...  (2.1 s)``."""
        of = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
        values = "  ".join(f"{k} {record[k]:.4f}" for k in EpochSummary.KEYS if k in record)
        return f"Epoch {record['epoch']}{of}  {values}  ({record['seconds']:.1f} s)"


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
