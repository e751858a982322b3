"""The LightningModule: any network of ``mnist_lit.models``, cross-entropy on logits, torchmetrics per epoch."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_lit.data.dataset import ImageSpec, load_dataset
from mnist_lit.errors import ConfigError, describe
from mnist_lit.models.base import build_network, network_config, network_shape

STAGES = ("train", "val", "test")
Batch = tuple[Tensor, Tensor]


class EpochMetrics(nn.Module):
    """Loss and accuracy of one stage over an epoch, computed by torchmetrics.

    A torchmetrics update costs more than the MLP's whole training step on a CPU, so step outputs
    are kept (detached, on the device) and handed to torchmetrics every ``chunk`` steps: the same
    result, a fraction of the cost, and no host synchronisation.
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
        self.save_hyperparameters(logger=False)  # the full config goes to TensorBoard from training.py
        self.spec = checkpoint_spec(dataset, data)
        self.net = build_network(model, self.spec.input_shape, self.spec.num_classes)
        if model.get("compile"):
            self.net.compile()  # in place: parameter names, and so checkpoints, stay the same
        # Metrics accumulate on the device and are logged once an epoch: no per-step self.log
        # (which costs more than the MLP's own step) and no host synchronisation.
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
        optimizer = instantiate(self.hparams.optimizer)(self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        config = dict(self.hparams.scheduler)
        interval = config.pop("interval", "step")
        make_scheduler = instantiate(config)
        kwargs = {}
        if "total_steps" in inspect.signature(make_scheduler.func).parameters and "total_steps" not in config:
            kwargs["total_steps"] = self.scheduler_steps()
        scheduler = make_scheduler(optimizer, **kwargs)
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


def hyper_parameter_names() -> tuple[set[str], set[str]]:
    """(every hyper-parameter a checkpoint may hold, those it must hold): ``DigitClassifier``'s arguments."""
    arguments = list(inspect.signature(DigitClassifier.__init__).parameters.values())[1:]
    return {a.name for a in arguments}, {a.name for a in arguments if a.default is inspect.Parameter.empty}


def checkpoint_problem(checkpoint: Any, resume: bool = False) -> str | None:
    """What keeps ``checkpoint`` (as torch.load returned it) from being one of this project's, or None."""
    if not isinstance(checkpoint, Mapping):
        return f"it holds a {type(checkpoint).__name__}, not the mapping Lightning saves"
    weights = checkpoint.get("state_dict")
    if not isinstance(weights, Mapping) or not weights:
        return "it has no state_dict (the network's weights)"
    for name, value in weights.items():
        if not isinstance(name, str) or not isinstance(value, Tensor):
            return f"state_dict[{name!r}] is a {type(value).__name__}, not a tensor"
    saved = checkpoint.get("hyper_parameters")
    if not isinstance(saved, Mapping):
        return "it has no hyper_parameters (the settings the network was built with)"
    allowed, required = hyper_parameter_names()
    unknown, missing = sorted(set(map(str, saved)) - allowed), sorted(required - set(saved))
    if unknown or missing:
        what = [f"hyper_parameters.{k} is not a setting of this project's module" for k in unknown]
        return "; ".join(what + [f"hyper_parameters.{k} is missing" for k in missing])
    model = saved["model"]
    if not isinstance(model, Mapping):
        return f"hyper_parameters.model is a {type(model).__name__}, not a group of settings"
    try:
        network_config(model)
    except ConfigError as e:
        return f"hyper_parameters: {e}"
    except (ImportError, AttributeError, TypeError, ValueError) as e:
        return f"hyper_parameters.model names no network of this project ({describe(e)})"
    if not isinstance(model.get("arch"), str) or not model["arch"]:
        return "hyper_parameters.model.arch is missing (the name of the network)"
    if not isinstance(saved["optimizer"], Mapping):
        return f"hyper_parameters.optimizer={saved['optimizer']!r} is not a group of settings"
    if saved.get("scheduler") is not None and not isinstance(saved["scheduler"], Mapping):
        return f"hyper_parameters.scheduler={saved['scheduler']!r} is neither null nor a group of settings"
    dataset, data = saved.get("dataset", "mnist"), saved.get("data")
    if data is not None and not isinstance(data, Mapping):
        return f"hyper_parameters.data is a {type(data).__name__}, not a group of settings"
    if dataset is not None or data is None:
        try:
            known = isinstance(dataset, str) and bool(load_dataset(dataset))
        except ConfigError:
            known = False
        if not known:
            return f"hyper_parameters.dataset={dataset!r} names no data set of this project"
    if data is not None:
        try:
            ImageSpec.from_dict(data)
        except ValueError as e:
            return f"hyper_parameters.data: {e}"
    for key in ("epoch", "global_step"):
        value = checkpoint.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{key}={value!r} is not a count (an integer >= 0)"
    if resume:
        # what Lightning restores on a resume besides the weights
        if not isinstance(checkpoint.get("optimizer_states"), list) or not checkpoint["optimizer_states"]:
            return "it holds no optimizer state (saved with weights only?), so it cannot be resumed"
        for key, kind in (("lr_schedulers", list), ("loops", Mapping), ("callbacks", Mapping)):
            if key in checkpoint and not isinstance(checkpoint[key], kind):
                return f"its {key} is a {type(checkpoint[key]).__name__}, so it cannot be resumed"
    return None


def load_checkpoint(
    ckpt_path: str | os.PathLike, arch: str | None = None, key: str = "ckpt_path", resume: bool = False
) -> dict[str, Any]:
    """The checkpoint at ``ckpt_path`` (``torch.load(weights_only=True)``: no code in it runs), checked: this
    project's (of architecture ``arch`` if given; ``resume``: with what a resume restores), its weights finite.
    ConfigError naming ``key`` and the file otherwise."""
    shown = f"{key}={str(ckpt_path)!r}"
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        raise ConfigError(
            f"{shown} is not allowed: it is a folder. Give a .ckpt file, e.g. <run directory>/checkpoints/best.ckpt"
        )
    if not path.is_file():
        raise ConfigError(f"{shown} is not allowed: no such file. Give a .ckpt file of this project.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, empty, foreign bytes, pickled code: torch raises many kinds
        raise ConfigError(
            f"{shown} is not allowed: it is not a checkpoint of this project that loads with weights_only=True "
            f"({describe(e)})"
        ) from e
    problem = checkpoint_problem(checkpoint, resume)
    if problem:
        raise ConfigError(f"{shown} is not allowed: it is not a checkpoint of this project: {problem}")
    saved = checkpoint["hyper_parameters"]["model"].get("arch")
    if arch is not None and saved != arch:
        raise ConfigError(
            f"{shown} holds a model.arch={saved!r} checkpoint, but model.arch={arch!r}: "
            f"add model={saved} (and the same model settings) to resume it"
        )
    broken = next(
        (n for n, t in checkpoint["state_dict"].items() if t.is_floating_point() and not t.isfinite().all()), None
    )
    if broken is not None:
        fix = (
            f"use {path.with_name('best.ckpt')}"
            if path.name != "best.ckpt"
            else "train again with a lower optimizer.lr"
        )
        raise ConfigError(
            f"{shown} is not allowed: its weights are not finite ({broken} holds NaN or infinity): the run diverged "
            f"before this checkpoint was saved; {fix}"
        )
    return checkpoint


def load_weights(module: nn.Module, weights: Mapping[str, Tensor], shown: str, model: Mapping[str, Any]) -> None:
    """Load ``weights`` into ``module``; ConfigError (``shown``: the key naming the file) when they do not fit."""
    expected = module.state_dict()
    problems = [f"{name} is missing" for name in expected if name not in weights]
    problems += [f"{name} is not a weight of the network" for name in weights if name not in expected]
    problems += [
        f"{name} is {tuple(weights[name].shape)}, the network's {tuple(value.shape)}"
        for name, value in expected.items()
        if name in weights and weights[name].shape != value.shape
    ]
    if not problems:
        try:
            module.load_state_dict(weights)
        except RuntimeError as e:
            problems.append(describe(e))
    if problems:
        sizes = ", ".join(f"model.{k}={v}" for k, v in network_shape(model).items())
        shown_problems = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ConfigError(
            f"{shown} is not allowed: its state_dict does not fit model.arch={model.get('arch')} with {sizes}: "
            f"{shown_problems}"
        )


def load_classifier(
    ckpt_path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    checkpoint: dict[str, Any] | None = None,
    key: str = "ckpt_path",
) -> DigitClassifier:
    """The classifier a checkpoint of this project holds (``checkpoint``: as ``load_checkpoint`` read it already)."""
    if checkpoint is None:
        checkpoint = load_checkpoint(ckpt_path, key=key)
    saved = checkpoint["hyper_parameters"]
    classifier = DigitClassifier(**saved)
    load_weights(classifier, checkpoint["state_dict"], f"{key}={str(ckpt_path)!r}", saved["model"])
    return classifier.to(map_location)
