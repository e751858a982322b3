"""Atomic writes: a write that fails keeps the previous file whole."""

from __future__ import annotations

import errno

import pytest

from mnist_lit.errors import OutputError
from mnist_lit.io import atomic as files


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    files.write_text(target, "good\n")

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(OutputError, match=f"could not write {target}: No space left on device.*previous metrics.json"):
        files.write_text(target, "new\n" * 1000)
    assert target.read_text() == "good\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # the temporary file is gone
