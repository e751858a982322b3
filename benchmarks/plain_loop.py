"""The reference for framework overhead: a plain PyTorch loop, no Lightning, no logging.

Same model (built from the project's Hydra config), same optimizer, batch size and images
(normalised once, in one float tensor), and the same validation pass per epoch. It runs two ways:

- ``python -m benchmarks.plain_loop [--epochs N] [overrides]``: on its own, in a fresh process;
  prints one JSON line (epoch seconds, time from process start to the first step, peak RSS);
- ``InterleavedReference``: a callback that ``make bench`` adds to the real ``python train.py``.
  Every 32 project optimizer steps (32 batches on the default path, one fetch under ``perf=fast``)
  it runs as many reference steps, timed apart, so the two sides take turns every fraction of a
  second and meet the same machine state (a shared VM's speed drifts within a minute: benchmarks/README.md).
  Each project epoch is paired with the reference epoch trained alongside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import Tensor

from mnist_lit.config import store  # noqa: F401  the networks in Hydra's ConfigStore, before composing
from mnist_lit.config.checks import PROJECT_ROOT
from mnist_lit.data.datamodule import ImageTensorDataset, MNISTDataModule, normalize
from mnist_lit.io.atomic import write_text
from mnist_lit.models.base import build_network
from mnist_lit.process.resources import peak_rss_mb, process_age

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


class PlainLoop:
    """A network, Adam and the images; ``epoch()`` trains one epoch and validates, like the project.

    ``start_epoch()``, ``train_steps(n)`` and ``validate()`` run the same epoch in pieces.
    """

    def __init__(
        self,
        model: dict[str, Any],
        optimizer: dict[str, Any],
        train: ImageTensorDataset,
        val: ImageTensorDataset,
        batch_size: int,
        eval_batch_size: int,
        device: torch.device,
    ) -> None:
        self.net = build_network(model).to(device)
        self.optimizer = instantiate(optimizer)(self.net.parameters())
        self.train_x, self.train_y = normalize(train.images.cpu()), train.labels.cpu()
        self.val_x, self.val_y = normalize(val.images.cpu()), val.labels.cpu()
        self.batch_size, self.eval_batch_size, self.device = batch_size, eval_batch_size, device
        self._batches: Iterator[Tensor] = iter(())

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_y) / self.batch_size)

    def start_epoch(self) -> None:
        """A new shuffle of the training images."""
        self._batches = iter(torch.randperm(len(self.train_y)).split(self.batch_size))

    def train_steps(self, steps: int) -> int:
        """Up to ``steps`` optimizer steps on the epoch's next batches; returns how many it took."""
        net, optimizer, device = self.net, self.optimizer, self.device
        net.train()
        taken = 0
        for _, index in zip(range(steps), self._batches, strict=False):
            # index_select: the fastest gather for a small batch (benchmarks/README.md)
            images = self.train_x.index_select(0, index).to(device, non_blocking=True)
            labels = self.train_y.index_select(0, index).to(device, non_blocking=True)
            loss = F.cross_entropy(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            taken += 1
        return taken

    def validate(self) -> None:
        net, device = self.net, self.device
        net.eval()
        with torch.no_grad():
            for start in range(0, len(self.val_y), self.eval_batch_size):
                stop = start + self.eval_batch_size
                images, labels = self.val_x[start:stop].to(device), self.val_y[start:stop].to(device)
                F.cross_entropy(net(images), labels).item()  # .item(): wait for the device, as logging does

    def epoch(self) -> float:
        """Seconds for one training epoch and its validation pass."""
        started = now(self.device)
        self.start_epoch()
        self.train_steps(self.steps_per_epoch)
        self.validate()
        return now(self.device) - started


def now(device: torch.device) -> float:
    """``perf_counter`` once the device has finished the work queued so far."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class InterleavedReference(L.Callback):
    """Trains the plain reference alongside the project, turn by turn, in the same process.

    Added by ``make bench`` as ``+callbacks.plain_reference._target_=...``. The project's first
    epoch runs alone (its warm-up); then the project's peak RSS is taken, the reference builds its
    network and its own copy of the images and runs its warm-up epoch alone. From the second
    epoch on, once the project has taken ``turn`` optimizer steps (a batch is one step; a fetch
    of ``perf=fast`` holds ``data.steps_per_fetch``), the reference takes as many, timed apart;
    its last steps and its validation pass run when the project's epoch is over. A project epoch
    is timed from its start to the start of the next epoch (or the end of training): its steps,
    the fetches, its validation pass, its
    epoch-end metrics and logging, its checkpoints and early-stopping check; less the reference's
    time inside it. Writes ``output`` (JSON) after every epoch: ``project_epoch_seconds`` and
    ``epoch_seconds`` (the reference's), pair by pair, each pair's optimizer steps (project,
    reference), the training images per epoch and the project's peak RSS.
    """

    handles_fetched_batches = True  # counts the batches of a perf=fast fetch, so perf=fast accepts it

    def __init__(self, output: str, turn: int = 32) -> None:
        self.output = Path(output)
        self.turn = turn
        self._owed = 0  # project steps the reference has not yet matched
        self.loop: PlainLoop | None = None
        self.results: dict[str, Any] = {"project_epoch_seconds": [], "epoch_seconds": [], "steps": []}
        self._project_started: float | None = None
        self._reference_inside = 0.0  # the reference's seconds within the project's current epoch
        self._steps = [0, 0]  # optimizer steps in the current epoch: the project's, the reference's

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_epoch(trainer, pl_module)
        if self.loop is not None:
            self.loop.start_epoch()
        self._reference_inside = 0.0
        self._steps = [0, 0]
        self._owed = 0
        self._project_started = now(pl_module.device)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        steps = len(batch) if isinstance(batch, list) else 1  # a fetch of steps_per_fetch batches, or one
        self._steps[0] += steps
        if self.loop is None:  # the project's warm-up epoch runs alone
            return
        self._owed += steps
        if self._owed >= self.turn:
            self._reference_turn(pl_module.device)

    def _reference_turn(self, device: torch.device) -> None:
        """The reference takes the optimizer steps it owes, timed apart from the project."""
        with without_nvml_check():
            started = now(device)
            self._steps[1] += self.loop.train_steps(self._owed)
            self._owed = 0
            self._reference_inside += now(device) - started

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_epoch(trainer, pl_module)

    def _end_epoch(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._project_started is None:
            return
        device = pl_module.device
        project = now(device) - self._project_started - self._reference_inside
        self._project_started = None
        with without_nvml_check():
            if self.loop is None:
                self.results["project_peak_rss_mb"] = peak_rss_mb()
                data = trainer.datamodule
                self.loop = PlainLoop(
                    pl_module.hparams.model, pl_module.hparams.optimizer, data.train_set, data.val_set,
                    data.batch_size, data.eval_batch_size, device,
                )  # fmt: skip
                self.results["train_images"] = len(self.loop.train_y)
                reference = self.loop.epoch()  # its warm-up, alone like the project's
                self._steps[1] = self.loop.steps_per_epoch
            else:
                self._reference_turn(device)  # the epoch's last steps
                started = now(device)
                self.loop.validate()
                reference = self._reference_inside + now(device) - started
        self.results["project_epoch_seconds"].append(project)
        self.results["epoch_seconds"].append(reference)
        self.results["steps"].append(self._steps)
        write_text(self.output, json.dumps(self.results))


@contextlib.contextmanager
def without_nvml_check() -> Iterator[None]:
    """As in the reference's own process: without Lightning's NVML-based CUDA check (see main())."""
    saved = os.environ.pop(NVML_CHECK, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[NVML_CHECK] = saved


def main() -> None:
    # Importing Lightning (through the project's modules used here for data and config) sets
    # PYTORCH_NVML_BASED_CUDA_CHECK=1, which makes every Adam step probe NVML; a plain PyTorch
    # program has no such setting, so the reference runs without it.
    os.environ.pop(NVML_CHECK, None)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as given to train.py")
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=args.overrides)
    torch.manual_seed(cfg.seed)
    data: MNISTDataModule = instantiate(cfg.data)  # the project's files, checks and split; its loaders are not used
    data.prepare_data()
    data.setup("fit")
    # The device the project's Trainer picks with accelerator=auto; batches move to it as the project's do.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loop = PlainLoop(
        cfg.model, cfg.optimizer, data.train_set, data.val_set, cfg.data.batch_size, cfg.data.eval_batch_size, device
    )
    startup = process_age()
    seconds = [loop.epoch() for _ in range(args.epochs)]
    print(json.dumps({"epoch_seconds": seconds, "startup_seconds": startup, "peak_rss_mb": peak_rss_mb(),
                      "train_images": len(loop.train_y)}))  # fmt: skip


if __name__ == "__main__":
    main()
