"""A folder of images, one subfolder per class (torchvision's ImageFolder layout), as a data module:
``python train.py data=image_folder data.root=<folder>``.

PNG, JPEG and BMP files of any size and mode are decoded once, when the data is first needed, into one uint8
tensor (N, C, H, W) in memory: converted to ``channels`` (1: grayscale, 3: RGB) and, with ``image_size``,
resized to image_size x image_size (without it, every image must already have one square size). The test
images are ``<root>/test/<class>/...``, or ``test_root``'s, or else a seeded share (``test_fraction``) of the
images held out. Bad data ends in a ConfigError naming the folder or the file; nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import find_classes, make_dataset

from mnist_lit.data.datamodule import ImageDataModule, ImageTensorDataset, split_indices
from mnist_lit.errors import ConfigError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
FORMATS = {"PNG", "JPEG", "BMP"}
TEST_FOLDER = "test"
MODES = {1: "L", 3: "RGB"}


def visible(path: str) -> bool:
    """Every file but hidden ones (``.DS_Store``, editors' files): any other file must be an image."""
    return not os.path.basename(path).startswith(".")


def class_files(root: Path, key: str, exclude: str | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, [(file, label)]) of a folder with one subfolder per class; ConfigError naming the folder."""
    if not root.is_dir():
        raise ConfigError(f"{key}={str(root)!r} is not allowed: it is not a folder (one subfolder per class)")
    try:
        classes, _ = find_classes(root)
    except FileNotFoundError:
        classes = []
    classes = [name for name in classes if name != exclude]
    if len(classes) < 2:
        found = f"only the class folder {classes[0]!r}" if classes else "no class folder"
        raise ConfigError(
            f"{key}={str(root)!r} is not allowed: it holds {found}; give a folder with one subfolder of images per "
            "class, two classes or more"
        )
    samples = make_dataset(root, {name: i for i, name in enumerate(classes)}, is_valid_file=visible, allow_empty=True)
    # In the order of the files' names (then classes): files named by their index in another data set keep its
    # order, and so its seeded split
    samples.sort(key=lambda sample: (os.path.basename(sample[0]), sample[1]))
    found = {label for _, label in samples}
    empty = [name for i, name in enumerate(classes) if i not in found]
    if empty:
        raise ConfigError(f"{key}={str(root)!r} is not allowed: its class folder {root / empty[0]} holds no images")
    return classes, samples


def decode(path: str, mode: str, size: int | None) -> np.ndarray:
    """One image file as uint8 (H, W, C) in ``mode``, resized to ``size`` x ``size`` if given; ConfigError naming
    the file when it is not a PNG, JPEG or BMP image that decodes whole."""
    shown = f"{path} is not a PNG, JPEG or BMP image that can be read"
    if not path.lower().endswith(SUFFIXES):
        raise ConfigError(f"{shown}: its name does not end in {', '.join(SUFFIXES)} (image folders hold images only)")
    try:
        with Image.open(path) as image:
            if image.format not in FORMATS:
                raise ConfigError(f"{shown}: it is a {image.format} file")
            image.load()  # decodes now: a truncated or corrupt file fails here, not later
            return fitted(image, mode, size)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{shown} ({type(e).__name__}: {e})") from None


def fitted(image: Image.Image, mode: str, size: int | None) -> np.ndarray:
    """A decoded image as uint8 (H, W, C) in ``mode``, resized to ``size`` x ``size`` if given: how the training
    images were read, and so how ``mnist_lit.predict`` reads an image for a model of them."""
    converted = image.convert(mode)
    if size is not None and converted.size != (size, size):
        converted = converted.resize((size, size), Image.Resampling.BILINEAR)
    array = np.array(converted, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def decode_all(samples: Sequence[tuple[str, int]], channels: int, size: int | None) -> ImageTensorDataset:
    """Every file decoded into one uint8 tensor (N, C, H, W); without ``size``, all must share one square size."""
    mode, images, first = MODES[channels], None, None
    for i, (path, _) in enumerate(samples):
        array = decode(path, mode, size)
        if images is None:
            height, width = array.shape[:2]
            if height != width:
                raise ConfigError(
                    f"{path} is {width}x{height}: the networks take square images, so give data.image_size=<side> "
                    "to resize every image"
                )
            images = torch.empty((len(samples), channels, height, width), dtype=torch.uint8)
            first = path
        elif array.shape[:2] != tuple(images.shape[2:]):
            raise ConfigError(
                f"{path} is {array.shape[1]}x{array.shape[0]} but {first} is {images.shape[3]}x{images.shape[2]}: "
                "images of mixed sizes need data.image_size=<side>, the size every image is resized to"
            )
        images[i] = torch.from_numpy(array).permute(2, 0, 1)
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return ImageTensorDataset(images, labels)


class ImageFolderDataModule(ImageDataModule):
    """The images of ``root/<class>/``, split into training, validation and (where no test folder is given)
    test images by seeded permutations; normalised with ``mean`` and ``std`` or with the training split's."""

    def __init__(
        self,
        root: str | None = None,
        test_root: str | None = None,
        image_size: int | None = None,
        channels: int = 3,
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
        if not root:
            raise ConfigError("data.root is missing: give data.root=<a folder with one subfolder of images per class>")
        if channels not in MODES:
            raise ConfigError(f"data.channels={channels!r} is not allowed: choose 1 (grayscale) or 3 (RGB)")
        if image_size is not None and image_size < 1:
            raise ConfigError(f"data.image_size={image_size!r} is not allowed: give a side in pixels >= 1, or null")
        if not 0 < test_fraction < 1:
            raise ConfigError(f"data.test_fraction={test_fraction!r} is not allowed: it must be in (0, 1)")
        for key, stats in (("mean", mean), ("std", std)):
            if stats is not None and len(stats) != channels:
                raise ConfigError(
                    f"data.{key}={list(stats)} is not allowed: give {channels} values (one per channel), or null"
                )
        if std is not None and not all(s > 0 for s in std):
            raise ConfigError(f"data.std={list(std)} is not allowed: every value must be > 0")
        super().__init__(
            data_dir, batch_size, eval_batch_size, val_fraction, split_seed, num_workers, pin_memory, on_device,
            augment, mean, std, folds, fold,
        )  # fmt: skip
        self.root = Path(root).expanduser()
        self.test_root = Path(test_root).expanduser() if test_root else None
        if self.test_root is None and (self.root / TEST_FOLDER).is_dir():
            self.test_root = self.root / TEST_FOLDER
        self.resize_to = image_size
        self.num_channels = channels
        self.test_fraction = test_fraction
        self.found: tuple[list[str], list[tuple[str, int]]] | None = None

    def files(self) -> tuple[list[str], list[tuple[str, int]]]:
        """(class names, [(file, label)]) of ``root`` (its test folder apart), listed once."""
        if self.found is None:
            self.found = class_files(self.root, "data.root", exclude=TEST_FOLDER if self.test_root else None)
        return self.found

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.files()[0])

    @property
    def image_size(self) -> int:
        return self.resize_to or self.splits()["train"].images.shape[-1]

    @property
    def channels(self) -> int:
        return self.num_channels

    def num_train_images(self) -> int | None:
        samples = len(self.files()[1])
        return samples if self.test_root else samples - round(samples * self.test_fraction)

    def read(self) -> tuple[ImageTensorDataset, ImageTensorDataset]:
        classes, samples = self.files()
        if self.test_root is None:
            pool = decode_all(samples, self.num_channels, self.resize_to)
            rest, held_out = split_indices(len(pool), self.test_fraction, self.split_seed)
            self.test_source = (
                f"held out: {len(held_out)} of the {len(pool)} images of {self.root} "
                f"(data.test_fraction={self.test_fraction}, data.split_seed={self.split_seed})"
            )
            return pool.subset(rest), pool.subset(held_out)
        key = "data.test_root" if self.test_root != self.root / TEST_FOLDER else "data.root's test folder"
        test_classes, test_samples = class_files(self.test_root, key)
        if test_classes != classes:
            raise ConfigError(
                f"{key}={str(self.test_root)!r} is not allowed: its class folders ({', '.join(test_classes)}) are "
                f"not those of {self.root} ({', '.join(classes)})"
            )
        pool = decode_all(samples, self.num_channels, self.resize_to)
        size = self.resize_to or pool.images.shape[-1]
        test = decode_all(test_samples, self.num_channels, size)
        self.test_source = f"the images of {self.test_root}"
        return pool, test
