"""Time to 99%: the project's speed run beside a peer recipe, over several seeds, by one command.

    python -m benchmarks.speedrun [--seeds 10] [Hydra overrides for both, e.g. data.data_dir=...]

The peer is this repository's own plain-PyTorch implementation of a published fast MNIST recipe
(tuomaso/train_mnist_fast, final version, from its description): all 60,000 training images held
on the device, a CNN conv 24@5x5 -> 2x2 max-pool -> conv 32@3x3 -> 2x2 max-pool -> dense 256 -> 10
(ReLU), batch 256, one epoch, Adam with betas (0.7, 0.9) under a one-cycle schedule peaking at
lr 0.01, then the 10,000 test images. A peer run is timed from the first training step to the test
accuracy, after one untimed warm-up run. The project's side is ``python train.py
experiment=speedrun seed=<s>`` (its ``fit_seconds`` and test accuracy from metrics.json).
Prints one row per side: mean seconds, mean / min test accuracy, runs at 99% or more.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import Tensor, nn
from torchvision.datasets import MNIST

from mnist_lit.config import store  # noqa: F401  the networks in Hydra's ConfigStore, before composing
from mnist_lit.config.checks import PROJECT_ROOT
from mnist_lit.data.datamodule import normalize
from mnist_lit.io.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]


def peer_network() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 24, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(24, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 5 * 5, 256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peer_run(data: dict[str, Tensor], seed: int, device: torch.device, batch_size: int = 256) -> tuple[float, float]:
    """One run of the peer recipe: (seconds from the first step to the test accuracy, test accuracy)."""
    torch.manual_seed(seed)
    net = peer_network().to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01, betas=(0.7, 0.9))
    steps = -(-len(data["train_y"]) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=steps)
    sync(device)
    started = time.perf_counter()
    net.train()
    for index in torch.randperm(len(data["train_y"]), device=device).split(batch_size):
        loss = F.cross_entropy(net(data["train_x"][index]), data["train_y"][index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    net.eval()
    with torch.no_grad():
        batches = zip(data["test_x"].split(2000), data["test_y"].split(2000), strict=True)
        correct = sum((net(x).argmax(1) == y).sum() for x, y in batches)
    accuracy = float(correct) / len(data["test_y"])  # float(): waits for the device
    return time.perf_counter() - started, accuracy


def load(data_dir: str, device: torch.device) -> dict[str, Tensor]:
    """The official training and test sets, normalised, on ``device``."""
    train, test = MNIST(data_dir, train=True), MNIST(data_dir, train=False)
    return {
        "train_x": normalize(train.data).to(device), "train_y": train.targets.to(device),
        "test_x": normalize(test.data).to(device), "test_y": test.targets.to(device),
    }  # fmt: skip


def project_run(seed: int, overrides: list[str]) -> tuple[float, float]:
    """``python train.py experiment=speedrun seed=<seed>``: (fit seconds, test accuracy)."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [
            sys.executable,
            "train.py",
            "experiment=speedrun",
            f"seed={seed}",
            f"hydra.run.dir={run_dir}",
            *overrides,
        ]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics["fit_seconds"], metrics["test/acc"]


def summary(name: str, runs: list[tuple[float, float]]) -> dict:
    seconds, accuracies = zip(*runs, strict=True)
    return {
        "side": name,
        "runs": len(runs),
        "mean_seconds": round(statistics.mean(seconds), 3),
        "min_seconds": round(min(seconds), 3),
        "mean_acc": round(statistics.mean(accuracies), 4),
        "min_acc": round(min(accuracies), 4),
        "runs_at_99": sum(a >= 0.99 for a in accuracies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--output", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the project's runs (data.data_dir=...)")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds={args.seeds}: must be at least 1")
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=speedrun", *args.overrides])
    instantiate(cfg.data).prepare_data()  # the project's acquisition and checks of the files
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load(cfg.data.data_dir, device)
    peer_run(data, seed=0, device=device)  # warm-up: kernels chosen, allocator filled
    rows = [
        summary("peer recipe", [peer_run(data, seed, device) for seed in range(1, args.seeds + 1)]),
        summary("experiment=speedrun", [project_run(seed, args.overrides) for seed in range(1, args.seeds + 1)]),
    ]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"Device: {device_name}; torch {torch.__version__}")
    print("| side | runs | mean s | min s | mean test acc | min test acc | runs >= 99% |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['side']} | {r['runs']} | {r['mean_seconds']:.3f} | {r['min_seconds']:.3f} | {r['mean_acc']:.4f} "
              f"| {r['min_acc']:.4f} | {r['runs_at_99']} |")  # fmt: skip
    if args.output:
        write_text(args.output, json.dumps({"device": device_name, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
