"""The LightningModule: any network from ``models``, cross-entropy on logits, torchmetrics per epoch."""

from __future__ import annotations

import inspect
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_lit.data import NUM_CLASSES
from mnist_lit.models import build_network

STAGES = ("train", "val", "test")
Batch = tuple[Tensor, Tensor]


class EpochMetrics(nn.Module):
    """Loss and accuracy of one stage over an epoch, computed by torchmetrics.

    A torchmetrics update costs about 0.1 ms on a CPU, more than the MLP's whole training step,
    so step outputs are kept (detached, on the device) and handed to torchmetrics every
    ``chunk`` steps: the same result, a fraction of the cost, and no host synchronisation.
    """

    def __init__(self, chunk: int = 64) -> None:
        super().__init__()
        self.chunk = chunk
        self.loss = MeanMetric(nan_strategy="disable")
        self.acc = MulticlassAccuracy(NUM_CLASSES, average="micro", validate_args=False)
        self._pending: list[tuple[Tensor, Tensor, Tensor]] = []

    def add(self, loss: Tensor, logits: Tensor, labels: Tensor) -> None:
        self._pending.append((loss.detach(), logits.detach(), labels))
        if len(self._pending) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        losses, logits, labels = zip(*self._pending, strict=True)
        self._pending = []
        sizes = torch.tensor([len(y) for y in labels], dtype=torch.float32, device=losses[0].device)
        self.loss.update(torch.stack(losses).float(), sizes)  # weighted: the mean over images
        self.acc.update(torch.cat(logits), torch.cat(labels))

    def compute(self) -> dict[str, Tensor]:
        """Epoch values (reduced across processes by torchmetrics), then reset for the next epoch."""
        self._flush()
        values = {"loss": self.loss.compute(), "acc": self.acc.compute()}
        self.reset()
        return values

    def reset(self) -> None:
        self._pending = []
        self.loss.reset()
        self.acc.reset()


class DigitClassifier(L.LightningModule):
    """Trains a digit classifier; logs ``<stage>/loss`` and ``<stage>/acc`` once per epoch.

    Hyperparameters are plain dicts (the ``model``, ``optimizer`` and ``scheduler`` configs), so
    checkpoints load with ``torch.load(weights_only=True)``.
    """

    def __init__(self, model: dict[str, Any], optimizer: dict[str, Any], scheduler: dict[str, Any] | None = None):
        super().__init__()
        self.save_hyperparameters(logger=False)  # the full config goes to TensorBoard from training.py
        # Manual optimisation: training_step does Lightning's zero_grad / manual_backward / step
        # itself, skipping the automatic loop's per-step closure and hooks (which cost as much as
        # the MLP's whole step on a CPU), and can take several steps per fetched batch.
        # Precision plugins and DDP work as with automatic mode.
        self.automatic_optimization = False
        self.net = build_network(model)
        if model.get("compile"):
            self.net.compile()  # in place: parameter names, and so checkpoints, stay the same
        # Metrics accumulate on the device and are logged once an epoch: no per-step self.log
        # (which costs more than the MLP's own step) and no host synchronisation.
        self.metrics = nn.ModuleDict({f"{stage}_metrics": EpochMetrics() for stage in STAGES})

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning records the hook being run in ``_current_fx_name`` twice per hook call, a
        # dozen times per optimizer step; ``nn.Module.__setattr__`` (which looks for parameters,
        # buffers and submodules first) costs about 1.5 us a time, 1-2% of the MLP's epoch.
        # A string is none of those, so it goes straight into the instance dict, as nn.Module
        # would put it.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        self.metrics[f"{stage}_metrics"].add(loss, logits, labels)
        return loss

    def _log_epoch(self, stage: str) -> None:
        values = {f"{stage}/{name}": value for name, value in self.metrics[f"{stage}_metrics"].compute().items()}
        # Values computed by torchmetrics are already reduced across processes.
        self.log_dict(values, prog_bar=stage == "val", sync_dist=False)

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> Tensor:
        """One optimizer step per batch; a fetch of several batches (``data.steps_per_fetch``) takes several."""
        optimizer = self.optimizers()
        for images_labels in batch if isinstance(batch, list) else [batch]:
            loss = self._step(images_labels, "train")
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            optimizer.step()
            self._step_scheduler("step")
        return loss

    def _step_scheduler(self, interval: str) -> None:
        # With manual optimisation Lightning leaves scheduler stepping to the module.
        if self.hparams.scheduler and self.hparams.scheduler.get("interval", "step") == interval:
            self.lr_schedulers().step()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor] | Tensor, batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images).softmax(dim=1)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        self._step_scheduler("epoch")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.metrics["val_metrics"].reset()
            return
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer)(self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        config = dict(self.hparams.scheduler)
        interval = config.pop("interval", "step")
        make_scheduler = instantiate(config)
        kwargs = {}
        if "total_steps" in inspect.signature(make_scheduler.func).parameters and "total_steps" not in config:
            kwargs["total_steps"] = self._total_optimizer_steps()
        scheduler = make_scheduler(optimizer, **kwargs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def _total_optimizer_steps(self) -> int:
        """The optimizer steps this fit will take, for schedules of a fixed length (one-cycle).

        Lightning counts fetched batches; a fetch holds up to ``data.steps_per_fetch`` optimizer
        batches, and an epoch's last fetch may hold fewer.
        """
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


def load_classifier(ckpt_path: str, map_location: str | torch.device = "cpu") -> DigitClassifier:
    """Load a checkpoint of this project with ``weights_only=True``: no code in it runs."""
    return DigitClassifier.load_from_checkpoint(ckpt_path, map_location=map_location, weights_only=True)
