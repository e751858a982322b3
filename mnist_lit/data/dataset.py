"""What the project needs to know about a data set of 28x28 grayscale images in the IDX format.

Each data set is one module of this package that defines ``DATASET`` (``mnist.py``, ...): its files and
their checksums, where they can come from, its normalisation and its class names. ``data.dataset=<module>``
chooses one; nothing else names them.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from collections.abc import Callable, Mapping
from pathlib import Path

from torch import Tensor

from mnist_lit.errors import ConfigError

# A source of the files besides torchvision's mirrors: fetch(raw folder, {file name: MD5}) writes them there.
Fetch = Callable[[Path, Mapping[str, str]], None]


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

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (or 0-255 float) images (N, 28, 28) -> float (N, 1, 28, 28): (pixel / 255 - mean) / std."""
        return images.unsqueeze(1).float().mul_(1.0 / (255.0 * self.std)).sub_(self.mean / self.std)


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
