"""Kaggle's Digit Recognizer layout as a data module: ``python train.py data=csv data.path=train.csv``.

A header ``label,pixel0,...,pixel783``, then one 28x28 grayscale image a row: its label (0-9) and its pixels
(0-255) row by row. The table is read by numpy in one call; so is Kaggle's unlabelled test.csv (``read_pixels``:
the same layout without the label column), which ``mnist_lit.predict`` reads. The test images are
``test_path``'s (the same layout, labels included), or else a seeded share (``test_fraction``) of the rows held
out. Bad data ends in a ConfigError naming the file and the line; nothing is written.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from mnist_lit.data.datamodule import ImageDataModule, ImageTensorDataset, split_indices
from mnist_lit.errors import ConfigError

SIDE = 28
PIXELS = [f"pixel{i}" for i in range(SIDE * SIDE)]
COLUMNS = ["label", *PIXELS]
CLASSES = tuple(str(digit) for digit in range(10))


def load_rows(path: Path, shown: str, columns: list[str]) -> np.ndarray:
    """The integers of a CSV file whose header is ``columns`` and whose pixels are 0-255, read by numpy in one call;
    ConfigError starting with ``shown`` and naming the line otherwise."""
    layout = f"{columns[0]},{columns[1]},...,{columns[-1]}"
    if not path.is_file():
        raise ConfigError(f"{shown} is not allowed: no such file (a CSV of {layout} rows)")
    try:
        with open(path, encoding="utf-8") as f:
            header = [name.strip() for name in f.readline().rstrip("\r\n").split(",")]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "loadtxt: input contained no data")  # a header only: said below
                table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        # numpy counts the rows it read after the header from 1: the file's line is one more
        raise ConfigError(f"{shown} cannot be read as a table of integers ({detail}; the header is line 1)") from None
    if header != columns:
        missing = [name for name in columns if name not in header]
        extra = [name for name in header if name not in columns]
        what = f"column {missing[0]} is missing" if missing else "its columns are not in Kaggle's order"
        what = f"it has a column {extra[0]}" if extra and not missing else what
        raise ConfigError(f"{shown} is not allowed: {what}; its header must be {layout}")
    if len(table) == 0:
        raise ConfigError(f"{shown} is not allowed: it holds a header only, no images")
    if table.shape[1] != len(columns):
        raise ConfigError(f"{shown} is not allowed: its rows have {table.shape[1]} values, the header {len(columns)}")
    pixels = table[:, -len(PIXELS) :]
    bad = np.flatnonzero((pixels < 0).any(axis=1) | (pixels > 255).any(axis=1))
    if len(bad):
        row = int(bad[0])
        column = int(np.flatnonzero((pixels[row] < 0) | (pixels[row] > 255))[0])
        raise ConfigError(
            f"{shown} is not allowed: line {row + 2} has pixel{column}={pixels[row, column]}, outside 0-255"
        )
    return table


def images_of(pixels: np.ndarray) -> torch.Tensor:
    """Rows of 784 pixels -> uint8 images (N, 1, 28, 28)."""
    return torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 1, SIDE, SIDE))


def read_pixels(path: Path, key: str) -> torch.Tensor:
    """The images of an unlabelled CSV file (Kaggle's test.csv: pixel0,...,pixel783 rows) as uint8 (N, 1, 28, 28);
    ConfigError naming ``key``, the file and the line otherwise."""
    return images_of(load_rows(path, f"{key}={str(path)!r}", PIXELS))


def read_table(path: Path, key: str) -> ImageTensorDataset:
    """The images and labels of one CSV file; ConfigError naming ``key``, the file and the line otherwise."""
    shown = f"{key}={str(path)!r}"
    table = load_rows(path, shown, COLUMNS)
    labels, pixels = table[:, 0], table[:, 1:]
    bad = np.flatnonzero((labels < 0) | (labels >= len(CLASSES)))
    if len(bad):
        row = int(bad[0])
        raise ConfigError(f"{shown} is not allowed: line {row + 2} has label={labels[row]}, not one of 0-9")
    return ImageTensorDataset(images_of(pixels), torch.from_numpy(labels))


class CSVDataModule(ImageDataModule):
    """Digits of a Kaggle-style CSV table, 28x28 grayscale, ten classes; normalised with ``mean`` and ``std`` or
    with the training split's."""

    def __init__(
        self,
        path: str | None = None,
        test_path: str | None = None,
        test_fraction: float = 0.1,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        data_dir: str = "data",
        batch_size: int = 32,
        eval_batch_size: int = 1000,
        val_fraction: float = 0.2,
        split_seed: int = 42,
        num_workers: int = 0,
        pin_memory: bool = False,
        on_device: bool = False,
        augment: str | None = None,
        folds: int | None = None,
        fold: int = 0,
    ) -> None:
        if not path:
            raise ConfigError("data.path is missing: give data.path=<a CSV of label,pixel0,...,pixel783 rows>")
        if not 0 < test_fraction < 1:
            raise ConfigError(f"data.test_fraction={test_fraction!r} is not allowed: it must be in (0, 1)")
        for key, stats in (("mean", mean), ("std", std)):
            if stats is not None and len(stats) != 1:
                raise ConfigError(f"data.{key}={list(stats)} is not allowed: give one value (grayscale), or null")
        if std is not None and std[0] <= 0:
            raise ConfigError(f"data.std={list(std)} is not allowed: it must be > 0")
        super().__init__(
            data_dir, batch_size, eval_batch_size, val_fraction, split_seed, num_workers, pin_memory, on_device,
            augment, mean, std, folds, fold,
        )  # fmt: skip
        self.path = Path(path).expanduser()
        self.test_path = Path(test_path).expanduser() if test_path else None
        self.test_fraction = test_fraction

    class_names = CLASSES
    image_size = SIDE
    channels = 1

    def num_train_images(self) -> int | None:
        """The rows of ``path`` (lines after the header), counted without parsing them."""
        try:
            with open(self.path, "rb") as f:
                rows = sum(1 for line in f if line.strip()) - 1
        except OSError:
            return None
        return rows if self.test_path else rows - round(rows * self.test_fraction)

    def read(self) -> tuple[ImageTensorDataset, ImageTensorDataset]:
        pool = read_table(self.path, "data.path")
        if self.test_path is not None:
            self.test_source = f"the rows of {self.test_path}"
            return pool, read_table(self.test_path, "data.test_path")
        rest, held_out = split_indices(len(pool), self.test_fraction, self.split_seed)
        self.test_source = (
            f"held out: {len(held_out)} of the {len(pool)} rows of {self.path} "
            f"(data.test_fraction={self.test_fraction}, data.split_seed={self.split_seed})"
        )
        return pool.subset(rest), pool.subset(held_out)
