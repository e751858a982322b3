"""Getting a data set's four IDX files into ``<data_dir>/<name>/raw``, checked against their published MD5s.

Sources, in order: files already there (plain or ``.gz``), torchvision's download from its
mirrors, then the data set's own further sources (``ImageDataset.sources``). Every file is written
under a temporary name and renamed into place only once its MD5 matches, and the whole acquisition
holds a file lock, so parallel jobs of a sweep download once and never read a half-written file.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock

from mnist_lit.data.dataset import ImageDataset
from mnist_lit.errors import ConfigError, UserError
from mnist_lit.io.atomic import atomic_file, unwritable_reason
from mnist_lit.process.resources import jobs_begun

log = logging.getLogger(__name__)


class DataUnavailableError(UserError):
    """No source could provide intact files (the message says what was tried and what to do)."""


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_intact(path: Path, md5: str) -> bool:
    return path.is_file() and file_digest(path) == md5


def all_intact(raw: Path, checksums: Mapping[str, str]) -> bool:
    """Whether ``raw`` holds every file of ``checksums`` with its MD5."""
    return all(_is_intact(raw / name, md5) for name, md5 in checksums.items())


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


def check_raw(raw: Path, checksums: Mapping[str, str], name: str = "") -> list[str]:
    """Names of the files still needed; corrupt files are reported and moved aside first.

    A ``.gz`` copy next to a missing file (as users often have them) is decompressed into place.
    """
    missing, what = [], name
    for name, md5 in checksums.items():
        path = raw / name
        if path.exists() and not _is_intact(path, md5):
            moved = _quarantine(path)
            log.warning("%s: %s is truncated or corrupt (MD5 mismatch); moved aside to %s", what, path, moved.name)
        gz = raw / f"{name}.gz"
        if not path.exists() and gz.is_file():
            try:
                with gzip.open(gz) as src, atomic_file(path, "wb", verify=md5_check(name, md5)) as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, ValueError, EOFError) as e:
                log.warning("%s: could not use %s (%s); moved aside", what, gz, e)
                _quarantine(gz)
        if not path.exists():
            missing.append(name)
    return missing


def download_from_mirrors(
    raw: Path,
    dataset: ImageDataset,
    checksums: Mapping[str, str],
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
) -> None:
    """torchvision's own download, into a temporary folder, then each file checked and renamed into place."""
    import torchvision.datasets

    official = getattr(torchvision.datasets, dataset.name)
    # torchvision derives the folder from the class name, so the subclass keeps the name.
    source = type(dataset.name, (official,), {"mirrors": list(mirrors)}) if mirrors else official
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # a black-holed mirror must not hang the run
    try:
        with tempfile.TemporaryDirectory(dir=raw, prefix=".download-") as tmp:
            _torchvision_download(source, Path(tmp))
            fetched = dataset.raw_dir(tmp)
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


def write_idx(path: Path, array: np.ndarray, verify: Callable[[Path], None] | None = None) -> None:
    """Write a uint8 array in the IDX format (big-endian header: magic 0x08 type code, rank, then dims), atomically."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with atomic_file(path, "wb", verify=verify) as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.tobytes())


def data_dir_error(data_dir: str | os.PathLike, reason: str, raw: Path, dataset: ImageDataset) -> ConfigError:
    """The error for a data folder that cannot receive the files it lacks."""
    return ConfigError(
        f"data.data_dir={data_dir} cannot be used: {reason}, and {raw} does not hold the four verified "
        f"{dataset.name} files. Give a writable folder with data.data_dir=..., or copy the four files into {raw}"
    )


def manual_steps(raw: Path, dataset: ImageDataset) -> str:
    """What a user can do by hand when no source works."""
    names = ", ".join(dataset.files)
    further = f"; or {dataset.by_hand}" if dataset.by_hand else ""
    return (
        f"To fix it by hand: copy the four {dataset.name} files ({names}; plain or .gz) into {raw} "
        f"and run again (each is checked against its published MD5); or set data.mirrors to a list of "
        f"reachable mirror URLs holding the .gz files{further}."
    )


_ANNOUNCED: set[tuple[Path, int]] = set()  # (directory, job) pairs whose verified files were announced


def announce_verified(raw: Path, dataset: ImageDataset) -> None:
    """Say which verified files are used: once a job (fit, test and an evaluation each check them)."""
    if (raw, jobs_begun()) not in _ANNOUNCED:
        _ANNOUNCED.add((raw, jobs_begun()))
        log.info("%s: using the verified files in %s", dataset.name, raw)


def ensure_dataset(
    data_dir: str | os.PathLike,
    dataset: ImageDataset,
    mirrors: Sequence[str] | None = None,
    use_sources: bool = True,
    checksums: Mapping[str, str] | None = None,
) -> str:
    """Make sure intact files of ``dataset`` are in ``<data_dir>/<name>/raw``; return where they came from.

    ``use_sources=False`` tries torchvision's mirrors only; ``checksums`` replace the published MD5s.
    """
    checksums = checksums or dataset.files
    raw = dataset.raw_dir(data_dir)
    # Verified files are only read: a read-only copy (a shared data folder) needs no lock and no writing.
    if all_intact(raw, checksums):
        announce_verified(raw, dataset)
        return "present"
    reason = unwritable_reason(raw)
    if reason:
        raise data_dir_error(data_dir, reason, raw, dataset)
    raw.mkdir(parents=True, exist_ok=True)
    with FileLock(str(raw / ".lock")):
        if not check_raw(raw, checksums, dataset.name):
            announce_verified(raw, dataset)
            return "present"
        sources = [("torchvision mirrors", lambda: download_from_mirrors(raw, dataset, checksums, mirrors))]
        if use_sources:
            sources += [(what, lambda fetch=fetch: fetch(raw, checksums)) for what, fetch in dataset.sources]
        tried = []
        for name, fetch in sources:
            log.info("%s: trying %s", dataset.name, name)
            try:
                fetch()
            except Exception as e:  # every failure is reported below, with the next source tried first
                tried.append(
                    f"  - {name}: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
                )
                log.warning("%s: %s failed: %s", dataset.name, name, tried[-1].split(": ", 1)[1])
                continue
            still_missing = check_raw(raw, checksums, dataset.name)
            if not still_missing:
                log.info("%s: files written to %s from %s, MD5s verified", dataset.name, raw, name)
                return name
            tried.append(f"  - {name}: still missing {', '.join(still_missing)}")
        raise DataUnavailableError(
            f"data.data_dir={data_dir}: could not obtain {dataset.name}. Tried:\n"
            + "\n".join(tried)
            + "\n"
            + manual_steps(raw, dataset)
        )
