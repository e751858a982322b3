"""Checkpoints written atomically: an interrupted or failed write (a full disk, a file-size limit) keeps the previous
one."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys

import pytest
import torch

from mnist_lit.errors import OutputError
from mnist_lit.io.checkpoint_io import AtomicCheckpointIO
from tests.conftest import ROOT, assert_refused, synthetic_overrides


def test_checkpoint_interrupted_mid_write_keeps_the_previous_one(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(1000)}, path)
    good = path.read_bytes()

    def half_then_full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(OutputError):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, path)
    assert path.read_bytes() == good and torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_full_tmpfs_keeps_the_previous_checkpoint(tmp_path, unmount):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]).returncode:
        pytest.skip("needs root and mount to make a small filesystem")
    unmount.append(disk)
    io = AtomicCheckpointIO()
    path = disk / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(100_000)}, path)  # 400 kB of the 1 MiB
    with pytest.raises(OutputError, match="No space left on device"):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(200_000)}, path)  # 800 kB more do not fit beside it
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in disk.iterdir()] == ["last.ckpt"]


def test_training_that_cannot_write_its_checkpoint_keeps_the_last_good_one(synthetic, plain_run_copy):
    """End to end: a file-size limit (as a full disk would) stops the resumed run; last.ckpt stays loadable."""
    last = plain_run_copy / "checkpoints" / "last.ckpt"
    good = last.read_bytes()
    limit = len(good) // 2  # the config and event files fit; no checkpoint does

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *synthetic_overrides(synthetic), f"ckpt_path={last}",
         "trainer.max_epochs=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=limited,
    )  # fmt: skip
    assert_refused(done, "could not write ")
    assert "previous" in done.stderr and "Free some space" in done.stderr
    assert last.read_bytes() == good and torch.load(last, weights_only=True)["epoch"] == 0
    assert not [p for p in (plain_run_copy / "checkpoints").iterdir() if p.name.endswith(".tmp")]
