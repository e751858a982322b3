"""The LightningModule: any network of ``mnist_lit.models``, cross-entropy on logits, torchmetrics per epoch."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_lit.config.schema import built_or_refused
from mnist_lit.data.dataset import ImageSpec, load_dataset
from mnist_lit.models.base import build_network, network_config

STAGES = ("train", "val", "test")
Batch = tuple[Tensor, Tensor]


class EpochMetrics(nn.Module):
    """Loss and accuracy of one stage over an epoch, computed by torchmetrics.

    A torchmetrics update per step would outweigh a small network's training step on a CPU
    (benchmarks/README.md has the cost), so step outputs are kept (detached, on the device) and
    handed to torchmetrics every ``chunk`` steps: the same result, a fraction of the cost, and no
    host synchronisation.
    """

    def __init__(self, num_classes: int, chunk: int = 64) -> None:
        super().__init__()
        self.chunk = chunk
        self.loss = MeanMetric(nan_strategy="disable")
        self.acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.pending: list[tuple[Tensor, Tensor, Tensor]] = []

    def add(self, loss: Tensor, logits: Tensor, labels: Tensor) -> None:
        """Record one step's mean loss, logits and labels."""
        self.pending.append((loss.detach(), logits.detach(), labels))
        if len(self.pending) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        """Hand the recorded steps to torchmetrics."""
        if not self.pending:
            return
        losses, logits, labels = zip(*self.pending, strict=True)
        self.pending = []
        sizes = torch.tensor([len(y) for y in labels], dtype=torch.float32, device=losses[0].device)
        self.loss.update(torch.stack(losses).float(), sizes)  # weighted: the mean over images
        self.acc.update(torch.cat(logits), torch.cat(labels))

    def compute(self) -> dict[str, Tensor]:
        """Epoch values (reduced across processes by torchmetrics), then reset for the next epoch."""
        self.flush()
        values = {"loss": self.loss.compute(), "acc": self.acc.compute()}
        self.reset()
        return values

    def reset(self) -> None:
        """Forget the epoch so far."""
        self.pending = []
        self.loss.reset()
        self.acc.reset()


class DigitClassifier(L.LightningModule):
    """Trains a digit classifier; logs ``<stage>/loss`` and ``<stage>/acc`` once per epoch.

    A LightningModule as Lightning's documentation teaches it: automatic optimisation, one batch
    per ``training_step``, the optimizer and scheduler from ``configure_optimizers`` (Lightning
    steps both), so every Trainer flag (gradient clipping, accumulation, ``max_steps``, ...) means
    what Lightning documents. Hyperparameters are plain values (the ``model``, ``optimizer`` and
    ``scheduler`` configs, the ``dataset`` module of IDX data sets, and ``data``: the data module's
    ``ImageSpec`` as ``as_dict`` writes it: image size, channels, class names, normalisation), so
    checkpoints load with ``torch.load(weights_only=True)``. Checkpoints saved before ``data`` existed
    are of ``dataset``'s 28x28 grayscale images.
    """

    def __init__(
        self,
        model: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        dataset: str | None = "mnist",
        data: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)  # the loggers get the run's describing keys from training.py
        self.spec = checkpoint_spec(dataset, data)
        self.net = build_network(model, self.spec.input_shape, self.spec.num_classes)
        if model.get("compile"):
            self.net.compile()  # in place: parameter names, and so checkpoints, stay the same
        # Metrics accumulate on the device and are logged once an epoch: no per-step self.log
        # (which would outweigh a small network's step: benchmarks/README.md) and no host synchronisation.
        classes = self.spec.num_classes
        self.label_smoothing = network_config(model).label_smoothing
        self.metrics = nn.ModuleDict({f"{stage}_metrics": EpochMetrics(classes) for stage in STAGES})

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def shared_step(self, batch: Batch, stage: str) -> Tensor:
        """Logits, loss and metric update for one batch of ``stage``; returns the loss."""
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing if stage == "train" else 0.0)
        self.metrics[f"{stage}_metrics"].add(loss, logits, labels)
        return loss

    def log_epoch(self, stage: str) -> None:
        """Log the stage's epoch loss and accuracy."""
        values = {f"{stage}/{name}": value for name, value in self.metrics[f"{stage}_metrics"].compute().items()}
        # Values computed by torchmetrics are already reduced across processes.
        self.log_dict(values, prog_bar=stage == "val", sync_dist=False)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self.shared_step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.shared_step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.metrics["val_metrics"].reset()
            return
        self.log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch("test")

    def configure_optimizers(self) -> Any:
        """The optimizer and scheduler, built once from their settings (a refusal is a ConfigError naming them)."""
        settings = self.hparams.optimizer
        build = lambda: instantiate(settings)(self.parameters())  # noqa: E731
        optimizer = built_or_refused("optimizer", settings["_target_"], build)
        if not self.hparams.scheduler:
            return optimizer
        config = dict(self.hparams.scheduler)
        interval = config.pop("interval", "step")
        make_scheduler = instantiate(config)
        kwargs = {}
        if "total_steps" in inspect.signature(make_scheduler.func).parameters and "total_steps" not in config:
            kwargs["total_steps"] = self.scheduler_steps()
        scheduler = built_or_refused("scheduler", config["_target_"], lambda: make_scheduler(optimizer, **kwargs))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def scheduler_steps(self) -> int:
        """The optimizer steps this fit will take, for schedules of a fixed length (one-cycle)."""
        total = self.trainer.estimated_stepping_batches  # limit_train_batches, accumulation and max_steps included
        if total == float("inf"):
            raise ValueError("a one-cycle schedule needs trainer.max_epochs or trainer.max_steps")
        return int(total)


def checkpoint_spec(dataset: str | None, data: Mapping[str, Any] | None) -> ImageSpec:
    """The images a classifier is for: its ``data`` hyper-parameter, or (checkpoints saved before it) those of
    the IDX data set ``dataset``. ValueError saying what is wrong otherwise."""
    if data is not None:
        return ImageSpec.from_dict(data)
    if not isinstance(dataset, str):
        raise ValueError(f"dataset={dataset!r} names no data set, and there is no data (image size, classes)")
    return load_dataset(dataset).spec
