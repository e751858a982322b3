"""The reference for framework overhead: a plain PyTorch loop, no Lightning, no logging.

Same model (built from the project's Hydra config), same optimizer, batch size and images
(already normalised, in one float tensor), and the same validation pass per epoch.
Prints one JSON line: epoch seconds, time from process start to the first step, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from mnist_lit.callbacks import process_age
from mnist_lit.config import PROJECT_ROOT
from mnist_lit.data import MNISTDataModule, normalize
from mnist_lit.models import build_network
from mnist_lit.training import peak_rss_mb


def main() -> None:
    # Importing Lightning (through the project's modules used here for data and config) sets
    # PYTORCH_NVML_BASED_CUDA_CHECK=1, which makes every Adam step probe NVML; a plain PyTorch
    # program has no such setting, so the reference runs without it.
    os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as given to train.py")
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=args.overrides)
    torch.manual_seed(cfg.seed)
    data: MNISTDataModule = instantiate(cfg.data)  # the project's files, checks and split; its loaders are not used
    data.prepare_data()
    data.setup("fit")
    train_x, train_y = normalize(data.train_set.images), data.train_set.labels
    val_x, val_y = normalize(data.val_set.images), data.val_set.labels
    # The device the project's Trainer picks with accelerator=auto; batches move to it as the project's do.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_network(cfg.model).to(device)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    batch, eval_batch = cfg.data.batch_size, cfg.data.eval_batch_size
    startup, seconds = None, []
    for _ in range(args.epochs):
        started = time.perf_counter()
        if startup is None:
            startup = process_age()
        model.train()
        for index in torch.randperm(len(train_y)).split(batch):
            # index_select: the fastest gather for a small batch (advanced indexing is several times slower)
            images = train_x.index_select(0, index).to(device, non_blocking=True)
            labels = train_y.index_select(0, index).to(device, non_blocking=True)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for start in range(0, len(val_y), eval_batch):
                images, labels = (
                    val_x[start : start + eval_batch].to(device),
                    val_y[start : start + eval_batch].to(device),
                )
                F.cross_entropy(model(images), labels).item()  # .item(): wait for the device, as logging does
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    print(json.dumps({"epoch_seconds": seconds, "startup_seconds": startup, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
