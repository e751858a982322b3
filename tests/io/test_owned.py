"""Owned outputs: an earlier one is replaced; anything else at its path is kept, even one put there while the
output was being written."""

from __future__ import annotations

import pytest

from mnist_lit.errors import OutputError
from mnist_lit.io.owned import Owned

MARK = "written by this command\n"
NOTES = Owned("a notes file of this command", lambda path: path.read_text() == MARK)
FOLDER = Owned("an earlier folder of this command", lambda path: (path / "mark").is_file(), folder=True)


def test_a_users_file_put_in_place_while_the_output_is_written_is_kept(tmp_path):
    path = tmp_path / "notes.txt"
    for _ in range(2):  # new, then its own earlier file: replaced
        with NOTES.written(path) as f:
            f.write(MARK)
    refused = pytest.raises(OutputError, match=f"{path} is not replaced: it is not a notes file of this command")
    with refused, NOTES.written(path) as f:
        f.write(MARK)
        path.write_text("mine\n")  # after the command checked the path
    assert path.read_text() == "mine\n"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # no temporary file left


def test_a_folder_that_became_a_users_while_the_output_is_written_is_kept(tmp_path):
    target = tmp_path / "report"
    for _ in range(2):
        with FOLDER.written(target) as tmp:
            (tmp / "mark").write_text("")
    refused = pytest.raises(OutputError, match=f"{target} is not replaced: it is not an earlier folder")
    with refused, FOLDER.written(target) as tmp:
        (tmp / "mark").write_text("")
        (target / "mark").unlink()
        (target / "mine.txt").write_text("mine\n")
    assert [p.name for p in target.iterdir()] == ["mine.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
