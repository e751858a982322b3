"""What a network needs to know of its images (``ImageSpec``), and the data sets of 28x28 grayscale images in the
IDX format that the project can download (``ImageDataset``).

Each downloadable data set is one module of this package that defines ``DATASET`` (``mnist.py``, ...): its files
and their checksums, where they can come from, its normalisation and its class names. ``data.dataset=<module>``
chooses one; nothing else names them.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from mnist_lit.config.schema import finite, fits
from mnist_lit.errors import ConfigError

# A source of the files besides torchvision's mirrors: fetch(raw folder, {file name: MD5}) writes them there.
Fetch = Callable[[Path, Mapping[str, str]], None]


SPEC_KEYS = ("image_size", "channels", "class_names", "mean", "std")


def channels_first(images: Tensor) -> Tensor:
    """Images as (N, C, H, W): a batch of one-channel images (N, H, W) gains its channel axis."""
    return images.unsqueeze(1) if images.dim() == 3 else images


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """The input a network is built for and the normalisation it expects: what a data module gives the network and
    what a checkpoint keeps (``as_dict``: plain values, so that it loads with ``weights_only=True``)."""

    image_size: int  # square images, image_size x image_size pixels
    channels: int  # 1 (grayscale) or 3 (RGB)
    class_names: tuple[str, ...]  # label i is class_names[i]
    mean: tuple[float, ...]  # per channel, of the training images' pixels in [0, 1]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return self.channels, self.image_size, self.image_size

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (or 0-255 float) images (N, C, H, W), or (N, H, W) of one channel -> float (N, C, H, W):
        (pixel / 255 - mean) / std, per channel."""
        x = channels_first(images).float()
        if len(self.mean) == 1:  # python numbers: no tensor to make on the device for every batch
            return x.mul_(1.0 / (255.0 * self.std[0])).sub_(self.mean[0] / self.std[0])
        scale = torch.tensor([1.0 / (255.0 * s) for s in self.std], device=x.device).view(1, -1, 1, 1)
        shift = torch.tensor([m / s for m, s in zip(self.mean, self.std, strict=True)], device=x.device)
        return x.mul_(scale).sub_(shift.view(1, -1, 1, 1))

    def as_dict(self) -> dict[str, object]:
        """Plain values (what a checkpoint's hyper-parameters hold)."""
        return {
            "image_size": self.image_size,
            "channels": self.channels,
            "class_names": list(self.class_names),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> ImageSpec:
        """The spec ``as_dict`` wrote; ValueError saying what is wrong otherwise."""
        missing = [key for key in SPEC_KEYS if key not in values]
        if missing:
            raise ValueError(f"{', '.join(missing)} missing")
        size, channels = values["image_size"], values["channels"]
        names, mean, std = values["class_names"], values["mean"], values["std"]
        if not fits(size, int) or size < 1:
            raise ValueError(f"image_size={size!r} is not a positive integer")
        if not fits(channels, Literal[1, 3]):
            raise ValueError(f"channels={channels!r} is neither 1 nor 3")
        if not fits(names, tuple[str, ...]) or len(names) < 2:
            raise ValueError(f"class_names={names!r} is not a list of two or more names")
        for key, stats in (("mean", mean), ("std", std)):
            if not isinstance(stats, (list, tuple)) or not all(map(finite, stats)) or len(stats) != channels:
                raise ValueError(f"{key}={stats!r} is not a list of {channels} numbers (one per channel)")
        if not all(s > 0 for s in std):
            raise ValueError(f"std={std!r} is not positive")
        return cls(size, channels, tuple(names), tuple(map(float, mean)), tuple(map(float, std)))


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """A data set of 28x28 grayscale images: torchvision's class of that ``name`` reads ``<data_dir>/<name>/raw``."""

    name: str  # torchvision.datasets' class, and the folder it reads
    files: Mapping[str, str]  # the four uncompressed IDX files -> their published MD5s
    mean: float  # of the training images' pixels, in [0, 1]
    std: float
    classes: tuple[str, ...]
    sources: tuple[tuple[str, Fetch], ...] = ()  # (what, fetch), tried in order after torchvision's mirrors
    by_hand: str = ""  # a further way to get the files, said when no source works

    def raw_dir(self, data_dir: str | os.PathLike) -> Path:
        """The folder torchvision's class reads: ``<data_dir>/<name>/raw``."""
        return Path(data_dir) / self.name / "raw"

    @property
    def spec(self) -> ImageSpec:
        """28x28 grayscale images, its classes, its published normalisation."""
        return ImageSpec(28, 1, self.classes, (self.mean,), (self.std,))

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (or 0-255 float) images (N, 28, 28) or (N, 1, 28, 28) -> float (N, 1, 28, 28)."""
        return self.spec.normalize(images)


def dataset_names() -> list[str]:
    """The modules of this package that define a data set."""
    package = importlib.import_module(__package__)
    return [
        info.name
        for info in pkgutil.iter_modules(package.__path__)
        if isinstance(getattr(importlib.import_module(f"{__package__}.{info.name}"), "DATASET", None), ImageDataset)
    ]


def load_dataset(name: str) -> ImageDataset:
    """The data set that module ``mnist_lit.data.<name>`` defines; ConfigError naming the choices otherwise."""
    try:
        dataset = getattr(importlib.import_module(f"{__package__}.{name}"), "DATASET", None)
    except ImportError:
        dataset = None
    if not isinstance(dataset, ImageDataset):
        raise ConfigError(f"data.dataset={name!r} is not allowed: choose one of {', '.join(dataset_names())}")
    return dataset
