"""The LightningModule of ``perf=fast``: several optimizer steps per fetched batch, manual optimisation."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from mnist_lit.lit_module import Batch, DigitClassifier


class FastDigitClassifier(DigitClassifier):
    """``DigitClassifier`` taking one optimizer step per batch of a fetch, under manual optimisation.

    The automatic loop's closure and per-step hooks are a large share of a small network's step on
    a CPU (benchmarks/README.md); here ``training_step`` does the zero_grad / backward / step itself, through
    Lightning's ``manual_backward`` and optimizer wrapper (precision plugins and DDP still work).
    Checkpoints are the same as the default module's and load with ``load_classifier``.
    """

    def __init__(
        self,
        model: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        dataset: str | None = "mnist",
        data: dict[str, Any] | None = None,
    ):
        super().__init__(model, optimizer, scheduler, dataset, data)
        self.automatic_optimization = False

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning records the hook being run in its ``_current_fx_name`` attribute twice per hook
        # call; nn.Module.__setattr__ (which looks for parameters, buffers and submodules first)
        # is dear at that rate, enough to show in a small network's epoch (benchmarks/README.md has
        # the cost). A string is none of those.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> Tensor:
        """One optimizer step per batch of the fetch."""
        optimizer = self.optimizers()
        for images_labels in batch if isinstance(batch, list) else [batch]:
            loss = self.shared_step(images_labels, "train")
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            optimizer.step()
            self.step_scheduler("step")
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.step_scheduler("epoch")

    def step_scheduler(self, interval: str) -> None:
        """Step the scheduler whose interval is ``interval`` (manual optimisation leaves it to the module)."""
        if self.hparams.scheduler and self.hparams.scheduler.get("interval", "step") == interval:
            self.lr_schedulers().step()

    def scheduler_steps(self) -> int:
        """The optimizer steps this fit will take: Lightning counts fetches, each up to ``steps_per_fetch`` steps."""
        trainer = self.trainer
        fetches = trainer.estimated_stepping_batches  # also sets num_training_batches (fetches an epoch)
        datamodule = trainer.datamodule
        steps_per_fetch = getattr(datamodule, "steps_per_fetch", 1)
        loader = trainer.train_dataloader
        if steps_per_fetch == 1 or loader is None or not math.isfinite(trainer.num_training_batches):
            return int(fetches) * steps_per_fetch  # exact with one step a fetch, else an upper bound
        images = len(loader.sampler)  # this process's share of an epoch (DDP splits it)
        per_epoch = min(trainer.num_training_batches * steps_per_fetch, math.ceil(images / datamodule.batch_size))
        total = per_epoch * trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else math.inf
        if trainer.max_steps > 0:
            total = min(total, trainer.max_steps)
        if not math.isfinite(total):
            raise ValueError("a one-cycle schedule needs trainer.max_epochs or trainer.max_steps")
        return int(total)
