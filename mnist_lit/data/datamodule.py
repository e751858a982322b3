"""Data sets as LightningDataModules: ``ImageDataModule`` holds what every data set shares (the data contract, the
seeded train/validation split, the in-memory batches, normalisation on the device), ``IDXDataModule`` the data
sets the project downloads (MNIST by default; ``data.dataset`` names another, ``mnist_lit.data.dataset``).
A folder of images (``mnist_lit.data.image_folder``) and a CSV table (``mnist_lit.data.csv_table``) are the others.

Images stay in memory as one uint8 tensor (N, C, H, W) per split; batches are gathered with one indexing
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

from mnist_lit.config.schema import fits
from mnist_lit.data.acquire import ensure_dataset, idx_count
from mnist_lit.data.augment import build_augmentation
from mnist_lit.data.dataset import ImageSpec, load_dataset
from mnist_lit.data.mnist import DATASET as MNIST
from mnist_lit.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def normalize(images: Tensor) -> Tensor:
    """MNIST's normalisation (``ImageSpec.normalize``): uint8 (N, 28, 28) -> float (N, 1, 28, 28)."""
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

    def subset(self, indices: Tensor) -> ImageTensorDataset:
        """The images and labels at ``indices``, copied into tensors of their own."""
        index = indices.to(self.labels.device)
        return ImageTensorDataset(self.images.index_select(0, index), self.labels.index_select(0, index))

    def to(self, device: torch.device) -> ImageTensorDataset:
        return ImageTensorDataset(self.images.to(device), self.labels.to(device))


def keep_batch(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Collate function for ``__getitems__`` batches, which are already stacked."""
    return batch


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded permutation of ``range(n)`` cut into (train, val) index tensors."""
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(n * val_fraction)
    return permutation[n_val:], permutation[:n_val]


def fold_indices(labels: Tensor, folds: int, fold: int, seed: int) -> tuple[Tensor, Tensor]:
    """Stratified k-fold cross-validation: (train, val) index tensors, ``val`` being fold ``fold`` of ``folds``.

    A seeded permutation of the images, ordered by class (a stable sort keeps each class in permuted order), is
    dealt out to the folds in turn: the folds partition the images, and each holds every class's images to within
    one of the same count. Every fold of one ``seed`` comes from the same partition.
    """
    permutation = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    by_class = permutation[torch.sort(labels[permutation], stable=True).indices]
    in_fold = torch.zeros(len(labels), dtype=torch.bool)
    in_fold[by_class[fold::folds]] = True
    return (~in_fold).nonzero().squeeze(1), in_fold.nonzero().squeeze(1)


def channel_statistics(images: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), of pixel / 255, in float64."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)  # a blank channel: no division by 0
    return tuple(mean.tolist()), tuple(std.tolist())


class ImageDataModule(L.LightningDataModule):
    """What every data set of the project shares: a training pool split by a seeded permutation into training and
    validation images (or, with ``folds``, into that many stratified folds, ``fold`` validated on and the others
    trained on: k-fold cross-validation, conf/cv/kfold.yaml), a test set apart, all held in memory as uint8
    (N, C, H, W) tensors.

    The data contract, what the networks and the evaluation read: ``image_size``, ``channels``,
    ``num_classes``, ``class_names`` and ``spec()`` (those with the normalisation, per-channel mean and
    std of pixel / 255: given, or computed from the training split), ``num_train_images()`` (the images
    the train/validation split divides, for checks of the split before anything is read), ``test_source``
    (in words, where the test images come from) and ``eval_dataloader(split)`` (a split's uint8 batches
    in order). A data set defines ``class_names``, ``image_size``, ``channels``, ``num_train_images``
    and ``read``.
    """

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 32,
        eval_batch_size: int = 1000,
        val_fraction: float = 0.2,
        split_seed: int = 42,
        num_workers: int = 0,
        pin_memory: bool = False,
        on_device: bool = False,
        augment: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        folds: int | None = None,
        fold: int = 0,
    ) -> None:
        super().__init__()
        if folds is not None and (not fits(folds, int) or folds < 2):
            raise ConfigError(
                f"cv.folds={folds!r} (data.folds) is not allowed: k-fold cross-validation needs an integer >= 2 "
                "(null: the val_fraction split)"
            )
        if folds is not None and (not fits(fold, int) or not 0 <= fold < folds):
            raise ConfigError(
                f"cv.fold={fold!r} (data.fold) is not allowed: with cv.folds={folds} it must be in 0..{folds - 1}"
            )
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.folds, self.fold = folds, fold
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.on_device = on_device
        self.augment = build_augmentation(augment)  # None: the presentation's protocol, images as they are
        self.mean = tuple(mean) if mean is not None else None
        self.std = tuple(std) if std is not None else None
        self.test_source = ""  # set by read()
        self.read_splits: dict[str, ImageTensorDataset] | None = None  # on the CPU, read once
        self.image_spec: ImageSpec | None = None
        self.train_set: ImageTensorDataset | None = None
        self.val_set: ImageTensorDataset | None = None
        self.test_set: ImageTensorDataset | None = None

    # What each data set defines.

    @property
    def class_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def image_size(self) -> int:
        raise NotImplementedError

    @property
    def channels(self) -> int:
        raise NotImplementedError

    def num_train_images(self) -> int | None:
        """The images the train/validation split divides, or None where they cannot be counted yet."""
        raise NotImplementedError

    def read(self) -> tuple[ImageTensorDataset, ImageTensorDataset]:
        """(the training pool, the test set) as uint8 (N, C, H, W) images and int64 labels on the CPU; sets
        ``test_source``. Bad data raises a UserError naming the file."""
        raise NotImplementedError

    # The contract, from what the data set defines.

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def splits(self) -> dict[str, ImageTensorDataset]:
        """The train, val and test splits on the CPU: the data read once, the pool split by ``split_seed``."""
        if self.read_splits is None:
            pool, test = self.read()
            if self.folds is None:
                train_idx, val_idx = split_indices(len(pool), self.val_fraction, self.split_seed)
                shown = ""
            else:
                self.check_folds(pool.labels)
                train_idx, val_idx = fold_indices(pool.labels, self.folds, self.fold, self.split_seed)
                shown = f" (fold {self.fold} of {self.folds})"
            self.read_splits = {"train": pool.subset(train_idx), "val": pool.subset(val_idx), "test": test}
            log.info(
                "%d training, %d validation%s and %d test images (%s)",
                len(train_idx), len(val_idx), shown, len(test), self.test_source,
            )  # fmt: skip
        return self.read_splits

    def check_folds(self, labels: Tensor) -> None:
        """Every fold must hold an image of each class the pool has: no more folds than its smallest class's images."""
        counts = torch.bincount(labels)
        present = counts.nonzero().squeeze(1)
        smallest = int(present[counts[present].argmin()])
        count = int(counts[smallest])
        if count < self.folds:
            fix = f"choose cv.folds={count} or fewer" if count >= 2 else "leave cross-validation out (cv=null)"
            raise ConfigError(
                f"cv.folds={self.folds} (data.folds) is not allowed: class {self.class_names[smallest]!r} has only "
                f"{count} training images, so some folds would validate without it; {fix}"
            )

    def spec(self) -> ImageSpec:
        """The images' size, channels, classes and normalisation: what the network is built for."""
        if self.image_spec is None:
            mean, std = self.mean, self.std
            if mean is None or std is None:
                mean, std = channel_statistics(self.splits()["train"].images)
            self.image_spec = ImageSpec(self.image_size, self.channels, tuple(self.class_names), mean, std)
        return self.image_spec

    def setup(self, stage: str | None = None) -> None:
        """Every split on the device it is used on; each is built once per process."""
        if self.train_set is None:
            device = self.data_device()
            splits = {name: split.to(device) for name, split in self.splits().items()}
            self.train_set, self.val_set, self.test_set = (splits[name] for name in SPLITS)

    def data_device(self) -> torch.device:
        # Holding the images on the accelerator removes the host-to-device copy of every batch.
        if self.on_device and self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def loader(self, dataset: ImageTensorDataset | None, batch_size: int, shuffle: bool) -> DataLoader:
        """A loader of whole-batch gathers over ``dataset``."""
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not been called for this stage")
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

    def eval_dataloader(self, split: str) -> DataLoader:
        """The uint8 (images, labels) batches of ``split`` (train, val or test), in order, ``eval_batch_size``
        images each: what evaluation reads (``setup()`` first)."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is none of {', '.join(SPLITS)}")
        return self.loader(getattr(self, f"{split}_set"), self.eval_batch_size, shuffle=False)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Normalise the uint8 images on the device they were moved to (augmented first, in training)."""
        images, labels = batch
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            images = self.augment(images)  # per image, on the device, before normalisation
        return self.spec().normalize(images), labels


class IDXDataModule(ImageDataModule):
    """A data set's official IDX files (MNIST's by default), acquired and verified; a seeded train/val split of
    its training images; its test images apart. 28x28 grayscale, normalised with the data set's published
    mean and std."""

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
        folds: int | None = None,
        fold: int = 0,
    ) -> None:
        self.dataset = load_dataset(dataset)
        super().__init__(
            data_dir, batch_size, eval_batch_size, val_fraction, split_seed, num_workers, pin_memory, on_device,
            augment, mean=(self.dataset.mean,), std=(self.dataset.std,), folds=folds, fold=fold,
        )  # fmt: skip
        self.mirrors = list(mirrors) if mirrors else None
        self.checksums = dict(checksums) if checksums else dict(self.dataset.files)
        self.source: str | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.dataset.classes

    @property
    def image_size(self) -> int:
        return self.dataset.spec.image_size

    @property
    def channels(self) -> int:
        return self.dataset.spec.channels

    def num_train_images(self) -> int | None:
        return idx_count(self.dataset.raw_dir(self.data_dir) / "train-labels-idx1-ubyte")

    def prepare_data(self) -> None:
        """Acquire and verify the four files (runs once per node, under a file lock)."""
        self.source = ensure_dataset(self.data_dir, self.dataset, mirrors=self.mirrors, checksums=self.checksums)

    def read(self) -> tuple[ImageTensorDataset, ImageTensorDataset]:
        """The official training and test files, read by torchvision."""
        sets = [self.reader(self.data_dir, train=train) for train in (True, False)]
        self.test_source = f"the official {self.dataset.name} test files"
        pool, test = (ImageTensorDataset(s.data.unsqueeze(1), s.targets) for s in sets)
        return pool, test

    @property
    def reader(self) -> type:
        """torchvision's class that reads this data set's IDX files."""
        return getattr(torchvision.datasets, self.dataset.name)


# The name of conf/data/mnist.yaml's data module before other data sets came: runs saved with it still build.
MNISTDataModule = IDXDataModule
