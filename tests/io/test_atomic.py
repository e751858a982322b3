"""Atomic writes: a write that fails keeps the previous file whole."""

from __future__ import annotations

import errno
import shutil

import pytest
from tensorboard.summary.writer.record_writer import RecordWriter

from mnist_lit.errors import OutputError
from mnist_lit.io import atomic as files
from tests.conftest import assert_refused, run_cli, snapshot, synthetic_overrides


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


@pytest.mark.parametrize("command", ["train.py", "evaluate.py"])
def test_a_full_disk_under_tensorboard_ends_in_the_same_line(synthetic, trained, tmp_path, monkeypatch, command):
    """TensorBoard writes its event files in a thread of its own, which raises their error again in the command's."""

    def full_disk(writer: RecordWriter, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    run = tmp_path / "run"
    if command == "evaluate.py":
        shutil.copytree(trained, run)
    before = snapshot(tmp_path)
    monkeypatch.setattr(RecordWriter, "write", full_disk)
    train = [*synthetic_overrides(synthetic), f"hydra.run.dir={run}", "model.hidden=8"]
    done = run_cli(command, *(train if command == "train.py" else [f"run_dir={run}"]), check=False)
    assert_refused(done, f"could not write {run}/events.out.tfevents.*: No space left on device")
    after = snapshot(tmp_path)
    assert {name: after.get(name) for name in before} == before  # what was there is kept
