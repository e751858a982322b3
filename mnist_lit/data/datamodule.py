"""A data set as a LightningDataModule: the official files, an 80/20 seeded train/validation split, the official
test set apart. MNIST by default; ``data.dataset`` names another (``mnist_lit.data.dataset``).

Images stay in memory as one uint8 tensor per split; batches are gathered with one indexing
operation (``__getitems__``) and normalised on the device after transfer, so no per-sample
Python work runs in the training loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
import torchvision.datasets
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mnist_lit.data.acquire import ensure_dataset
from mnist_lit.data.augment import build_augmentation
from mnist_lit.data.dataset import load_dataset
from mnist_lit.data.mnist import DATASET as MNIST

log = logging.getLogger(__name__)

NUM_CLASSES = len(MNIST.classes)


def normalize(images: Tensor) -> Tensor:
    """MNIST's normalisation (``ImageDataset.normalize``): uint8 (N, 28, 28) -> float (N, 1, 28, 28)."""
    return MNIST.normalize(images)


class ImageTensorDataset(Dataset):
    """Images and labels held as two tensors; a batch is one indexing operation, not a Python loop."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        # index_select gathers a batch this small faster than advanced indexing (benchmarks/README.md)
        index = torch.as_tensor(indices, device=self.labels.device)
        return self.images.index_select(0, index), self.labels.index_select(0, index)


def keep_batch(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Collate function for ``__getitems__`` batches, which are already stacked."""
    return batch


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded permutation of ``range(n)`` cut into (train, val) index tensors."""
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(n * val_fraction)
    return permutation[n_val:], permutation[:n_val]


class MNISTDataModule(L.LightningDataModule):
    """A data set's official files (MNIST's by default); a seeded train/val split of its training images; its
    test images apart."""

    def __init__(
        self,
        dataset: str = "mnist",
        data_dir: str = "data",
        batch_size: int = 32,
        eval_batch_size: int = 1000,
        val_fraction: float = 0.2,
        split_seed: int = 42,
        num_workers: int = 0,
        pin_memory: bool = False,
        on_device: bool = False,
        mirrors: Sequence[str] | None = None,
        checksums: Mapping[str, str] | None = None,
        augment: str | None = None,
    ) -> None:
        super().__init__()
        self.dataset = load_dataset(dataset)
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.on_device = on_device
        self.mirrors = list(mirrors) if mirrors else None
        self.checksums = dict(checksums) if checksums else dict(self.dataset.files)
        self.augment = build_augmentation(augment)  # None: the presentation's protocol, images as they are
        self.source: str | None = None
        self.train_set: ImageTensorDataset | None = None
        self.val_set: ImageTensorDataset | None = None
        self.test_set: ImageTensorDataset | None = None

    def prepare_data(self) -> None:
        """Acquire and verify the four files (runs once per node, under a file lock)."""
        self.source = ensure_dataset(self.data_dir, self.dataset, mirrors=self.mirrors, checksums=self.checksums)

    def setup(self, stage: str | None = None) -> None:
        """Read the IDX files with torchvision and split; each split is built once per process."""
        device = self._device()
        if stage in (None, "fit", "validate") and self.train_set is None:
            official = self.reader(self.data_dir, train=True)
            train_idx, val_idx = split_indices(len(official.targets), self.val_fraction, self.split_seed)
            images, labels = official.data.to(device), official.targets.to(device)
            self.train_set = ImageTensorDataset(images[train_idx.to(device)], labels[train_idx.to(device)])
            self.val_set = ImageTensorDataset(images[val_idx.to(device)], labels[val_idx.to(device)])
            log.info(
                "%s: %d training and %d validation images", self.dataset.name, len(self.train_set), len(self.val_set)
            )
        if stage in (None, "test", "predict") and self.test_set is None:
            official = self.reader(self.data_dir, train=False)
            self.test_set = ImageTensorDataset(official.data.to(device), official.targets.to(device))

    @property
    def reader(self) -> type:
        """torchvision's class that reads this data set's IDX files."""
        return getattr(torchvision.datasets, self.dataset.name)

    def _device(self) -> torch.device:
        # Holding the images on the accelerator removes the host-to-device copy of every batch.
        if self.on_device and self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def loader(self, dataset: ImageTensorDataset | None, batch_size: int, shuffle: bool) -> DataLoader:
        """A loader of whole-batch gathers over ``dataset``."""
        if dataset is None:
            raise RuntimeError("MNISTDataModule.setup() has not been called for this stage")
        on_cpu = dataset.labels.device.type == "cpu"
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=keep_batch,
            num_workers=self.num_workers if on_cpu else 0,
            pin_memory=self.pin_memory and on_cpu,
            persistent_workers=self.num_workers > 0 and on_cpu,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.test_set, self.eval_batch_size, shuffle=False)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Normalise the uint8 images on the device they were moved to (augmented first, in training)."""
        images, labels = batch
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            images = self.augment(images)  # per image, on the device, before normalisation
        return self.dataset.normalize(images), labels
