"""The reference for framework overhead: a plain PyTorch loop, no Lightning, no logging.

Same model (built from the project's Hydra config), same optimizer, batch size and images
(normalised once, in one float tensor), and the same validation pass per epoch. It runs two ways:

- ``python -m benchmarks.plain_loop [--epochs N] [overrides]``: on its own, in a fresh process;
  prints one JSON line (epoch seconds, time from process start to the first step, peak RSS);
- ``InterleavedReference``: a callback that ``make bench`` adds to the real ``python train.py``,
  running one reference epoch after each of the project's epochs in the same process, so that
  each pair of epochs meets the same machine state (this shared VM's speed drifts by 10-30%).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from mnist_lit.callbacks import process_age
from mnist_lit.config import PROJECT_ROOT
from mnist_lit.data import ImageTensorDataset, MNISTDataModule, normalize
from mnist_lit.models import build_network
from mnist_lit.training import peak_rss_mb

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


class PlainLoop:
    """A network, Adam and the images; ``epoch()`` trains one epoch and validates, like the project."""

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

    def epoch(self) -> float:
        """Seconds for one training epoch and its validation pass."""
        started = time.perf_counter()
        net, optimizer, device = self.net, self.optimizer, self.device
        net.train()
        for index in torch.randperm(len(self.train_y)).split(self.batch_size):
            # index_select: the fastest gather for a small batch (advanced indexing is several times slower)
            images = self.train_x.index_select(0, index).to(device, non_blocking=True)
            labels = self.train_y.index_select(0, index).to(device, non_blocking=True)
            loss = F.cross_entropy(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            for start in range(0, len(self.val_y), self.eval_batch_size):
                stop = start + self.eval_batch_size
                images, labels = self.val_x[start:stop].to(device), self.val_y[start:stop].to(device)
                F.cross_entropy(net(images), labels).item()  # .item(): wait for the device, as logging does
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started


class InterleavedReference(L.Callback):
    """After each of the project's training epochs (validation and checkpoint included), one reference epoch.

    Added by ``make bench`` as ``+callbacks.plain_reference._target_=...``; writes ``output`` (JSON)
    after every epoch: the reference's epoch seconds, the training images per epoch, and the
    project's peak RSS measured before the reference allocated its own copy of the images.
    """

    def __init__(self, output: str) -> None:
        self.output = Path(output)
        self.loop: PlainLoop | None = None
        self.results: dict[str, Any] = {"epoch_seconds": []}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.loop is None:
            self.results["project_peak_rss_mb"] = peak_rss_mb()
            data = trainer.datamodule
            self.loop = PlainLoop(
                pl_module.hparams.model, pl_module.hparams.optimizer, data.train_set, data.val_set,
                data.batch_size, data.eval_batch_size, pl_module.device,
            )  # fmt: skip
            self.results["train_images"] = len(self.loop.train_y)
        # As in the reference's own process: without Lightning's NVML-based CUDA check (see main()).
        nvml_check = os.environ.pop(NVML_CHECK, None)
        try:
            self.results["epoch_seconds"].append(self.loop.epoch())
        finally:
            if nvml_check is not None:
                os.environ[NVML_CHECK] = nvml_check
        self.output.write_text(json.dumps(self.results))


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
