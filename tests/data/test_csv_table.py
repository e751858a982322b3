"""``data=csv``: a Kaggle-style table read by numpy in one call, trained on for an epoch; bad tables refused in one
line naming the file and the line, nothing written."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_lit.data.csv_table import COLUMNS, CSVDataModule
from mnist_lit.errors import ConfigError
from tests.conftest import snapshot, train_in_process


def write_csv(path, rows: int = 200, seed: int = 0, header: list[str] = COLUMNS):
    """A Kaggle-style table: each digit a fixed random pattern with noise."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((10, 784)) > 0.7
    labels = np.arange(rows) % 10
    pixels = ((prototypes[labels] ^ (rng.random((rows, 784)) > 0.9)) * 255).astype(np.int64)
    table = np.column_stack([labels, pixels])
    np.savetxt(path, table, fmt="%d", delimiter=",", header=",".join(header), comments="")
    return path


def test_a_kaggle_csv_trains(tmp_path):
    table = write_csv(tmp_path / "train.csv")
    metrics = train_in_process(
        tmp_path / "run", "data=csv", f"data.path={table}", "model.hidden=16", "trainer.max_epochs=1"
    )
    assert metrics["test/acc"] > 0.2 and "held out: 20 of the 200 rows" in metrics["test_set"]


def spoil_csv(path, how: str) -> str:
    lines = path.read_text().splitlines()
    if how == "missing column":
        lines = [",".join(line.split(",")[:-1]) for line in lines]
        expected = "column pixel783 is missing"
    elif how == "pixel out of range":
        cells = lines[3].split(",")
        cells[5] = "256"
        lines[3] = ",".join(cells)
        expected = "line 4 has pixel4=256, outside 0-255"
    elif how == "label out of range":
        lines[2] = "10" + lines[2][1:]
        expected = "line 3 has label=10, not one of 0-9"
    elif how == "header only":
        lines = lines[:1]
        expected = "it holds a header only"
    else:
        lines[5] = lines[5] + ",x"
        expected = "cannot be read as a table of integers"
    path.write_text("\n".join(lines) + "\n")
    return expected


@pytest.mark.parametrize("how", ["missing column", "pixel out of range", "label out of range", "header only", "text"])
def test_bad_tables_are_refused_naming_the_file_and_the_line(tmp_path, how):
    table = write_csv(tmp_path / "train.csv", rows=12)
    expected = spoil_csv(table, how)
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match=rf"data.path='{table}'.*{expected}"):
        CSVDataModule(path=str(table)).spec()
    assert snapshot(tmp_path) == before
