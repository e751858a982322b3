"""Stochastic weight averaging of the last epochs, as Lightning's ``WeightAveraging`` callback is meant to be extended.

``callbacks/averaging=swa`` uses it; ``callbacks/averaging=ema`` is Lightning's own ``EMAWeightAveraging``.
Lightning's older ``StochasticWeightAveraging`` callback is not used: it replaces the configured learning-rate
schedule with its own per-epoch one, validates and checkpoints the current weights (so ``best.ckpt`` never holds
the average) and adds a training epoch of its own for batch normalisation.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import WeightAveraging

from mnist_lit.config.schema import fits


class LastEpochsAveraging(WeightAveraging):
    """The equal average of the weights at the end of each of the last ``epochs`` of ``trainer.max_epochs``.

    Until the first epoch it averages has ended there is no average: validation, checkpoints and the end of
    training see the current weights, as without the callback. From then on validation sees the average, and
    checkpoints hold it as their weights (with the current ones beside them, for resuming), as Lightning's
    ``WeightAveraging`` does. Batch-norm statistics are averaged with the weights (``use_buffers``).
    """

    def __init__(self, epochs: int, device: str | None = None, use_buffers: bool = True) -> None:
        super().__init__(device=device, use_buffers=use_buffers)  # no avg_fn: AveragedModel's equal average
        if not fits(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, not {epochs!r}")
        self.epochs = epochs
        self.first_epoch = 0  # 0-based index of the first averaged epoch, from trainer.max_epochs in setup
        self.averaging = False  # whether an epoch's weights are in the average yet

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """The first averaged epoch, counted back from ``trainer.max_epochs``."""
        super().setup(trainer, pl_module, stage)
        self.first_epoch = max(int(trainer.max_epochs or 1) - self.epochs, 0)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """At the end of every epoch from ``first_epoch`` on (never per step)."""
        update = epoch_idx is not None and epoch_idx >= self.first_epoch
        self.averaging = self.averaging or update  # WeightAveraging updates whenever this says so
        return update

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Validate the average once there is one."""
        if self.averaging:
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Put the current weights back after validating the average."""
        if self.averaging:
            super().on_validation_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """End with the average, if there is one."""
        if self.averaging:
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """The average as the checkpoint's weights once there is one; before that the current weights alone."""
        if self.averaging:
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Restore the average and the current weights from a checkpoint saved while averaging."""
        if "current_model_state" in checkpoint:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def state_dict(self) -> dict[str, Any]:
        """Lightning's state, and whether the average has begun."""
        return {**super().state_dict(), "averaging": self.averaging}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved."""
        super().load_state_dict(state_dict)
        self.averaging = bool(state_dict.get("averaging", False))
