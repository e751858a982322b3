"""A callback that tests add to the real ``python train.py`` to see what Lightning does, batch by batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch


class BatchRecorder(L.Callback):
    """Records the network's first and last parameters, the first training batches and the hooks' counts.

    Added as ``+callbacks.recorder._target_=tests.lightning_probes.BatchRecorder
    +callbacks.recorder.output=<file>``; writes ``output`` with ``torch.save`` when training ends.
    """

    def __init__(self, output: str, keep_batches: int = 8) -> None:
        self.output = Path(output)
        self.keep_batches = keep_batches
        self.record: dict[str, Any] = {"batches": [], "batch_ends": 0, "validated_at": [], "lr": []}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record["initial"] = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}
        self.record["batches_per_epoch"] = trainer.num_training_batches

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int):
        if len(self.record["batches"]) < self.keep_batches:
            self.record["batches"].append(tuple(t.detach().clone() for t in batch))
        self.record["lr"].append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.record["batch_ends"] += 1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.record["validated_at"].append(trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record["final"] = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}
        self.record["global_step"] = trainer.global_step
        torch.save(self.record, self.output)
