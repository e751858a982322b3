"""Fashion-MNIST: 60,000 training and 10,000 test 28x28 grayscale images of clothing in ten classes, in MNIST's
IDX format, with the MD5s of its uncompressed files and its sources.

Besides torchvision's mirrors, the files can come from Debian's package ``dataset-fashion-mnist``
(``apt-get install dataset-fashion-mnist``), which installs them gzipped in
``/usr/share/datasets/fashion-mnist/``. Debian recompressed them, so only the decompressed files are
checked: against the MD5s below, which are those of the published files.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Mapping
from pathlib import Path

from mnist_lit.data.acquire import md5_check
from mnist_lit.data.dataset import ImageDataset
from mnist_lit.io.atomic import atomic_file

FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def copy_from_debian(raw: Path, checksums: Mapping[str, str], source: Path | None = None) -> None:
    """Decompress the Debian package's four files into ``raw``, each installed only once its MD5 matches."""
    source = source or DEBIAN_DIR
    if not source.is_dir():
        raise FileNotFoundError(f"{source} does not exist (apt-get install dataset-fashion-mnist)")
    for name, md5 in checksums.items():
        if (raw / name).exists():
            continue
        with gzip.open(source / f"{name}.gz") as src, atomic_file(raw / name, "wb", verify=md5_check(name, md5)) as dst:
            shutil.copyfileobj(src, dst)


DATASET = ImageDataset(
    name="FashionMNIST",
    files=FILES,
    mean=0.2860,  # of the 60,000 training images' pixels
    std=0.3530,
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    sources=((f"Debian package dataset-fashion-mnist ({DEBIAN_DIR})", copy_from_debian),),
    by_hand="install Debian's package dataset-fashion-mnist (its files in /usr/share/datasets/fashion-mnist/)",
)
