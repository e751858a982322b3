"""The folder and CSV data sets against the IDX one on the real MNIST: ``python -m benchmarks.datasets``.

MNIST's training and test images are written out as a folder of PNGs (``<class>/<index>.png``, the test images
under ``test/``) and as two Kaggle-style CSV files. The three data modules must then hold the same images in the
same splits (checked tensor for tensor), and the same network trained on each with the same seeds must reach the
same test accuracy (within 0.1 point).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image
from torchvision.datasets import MNIST

from mnist_lit.config import store  # noqa: F401  the networks in Hydra's ConfigStore, before composing
from mnist_lit.config.resolvers import PROJECT_ROOT
from mnist_lit.data.mnist import DATASET

NORMALISED = [f"data.mean=[{DATASET.mean}]", f"data.std=[{DATASET.std}]"]  # MNIST's published statistics


def write_out(images: np.ndarray, labels: np.ndarray, folder: Path, csv: Path) -> None:
    """``images`` as ``folder/<label>/<index>.png`` and as ``csv`` (label,pixel0,...,pixel783)."""
    for label in np.unique(labels):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(image).save(folder / str(label) / f"{index:05d}.png")
    header = "label," + ",".join(f"pixel{i}" for i in range(images[0].size))
    table = np.column_stack([labels, images.reshape(len(images), -1)])
    np.savetxt(csv, table, fmt="%d", delimiter=",", header=header, comments="")


def overrides_for(name: str, root: Path, data_dir: str) -> list[str]:
    if name == "mnist":
        return [f"data.data_dir={data_dir}"]
    if name == "image_folder":
        return ["data=image_folder", f"data.root={root / 'folder'}", "data.channels=1", *NORMALISED]
    return ["data=csv", f"data.path={root / 'train.csv'}", f"data.test_path={root / 'test.csv'}", *NORMALISED]


def splits(overrides: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The train, val and test splits (images, labels) of the data module ``overrides`` choose."""
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    datamodule = instantiate(cfg.data)
    return {name: (split.images, split.labels) for name, split in datamodule.splits().items()}


def trained(overrides: list[str], seed: int, epochs: int) -> float:
    """``python train.py model=mlp`` with ``overrides``: its test accuracy."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "train.py", f"seed={seed}", f"trainer.max_epochs={epochs}", f"hydra.run.dir={tmp}/run",
               *overrides]  # fmt: skip
        done = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        return json.loads((Path(tmp) / "run" / "metrics.json").read_text())["test/acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(PROJECT_ROOT / "data"), help="where MNIST/raw/ is")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for train, folder, csv in ((True, root / "folder", root / "train.csv"),
                                   (False, root / "folder" / "test", root / "test.csv")):  # fmt: skip
            mnist = MNIST(args.data_dir, train=train)
            write_out(mnist.data.numpy(), mnist.targets.numpy(), folder, csv)
        names = ("mnist", "image_folder", "csv")
        reference = splits(overrides_for("mnist", root, args.data_dir))
        for name in names[1:]:
            for split, (images, labels) in splits(overrides_for(name, root, args.data_dir)).items():
                same = torch.equal(images, reference[split][0]) and torch.equal(labels, reference[split][1])
                print(f"{name} {split}: {len(labels)} images, the same as data=mnist's: {same}", flush=True)
        for seed in args.seeds:
            accuracies = {name: trained(overrides_for(name, root, args.data_dir), seed, args.epochs) for name in names}
            print(f"seed {seed}, {args.epochs} epochs, test/acc: "
                  + ", ".join(f"{name} {acc:.4f}" for name, acc in accuracies.items()), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
