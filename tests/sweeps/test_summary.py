"""``mnist_lit.sweep_summary`` on hand-made job directories: ranking, failed and running jobs, the command line."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mnist_lit.sweeps.summary import main, read_sweep, write_summary
from tests.conftest import figures, make_job


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    common = ["data=synthetic", "model=cnn"]
    make_job(tmp_path, 0, [*common, "model.filters=8", "model.dense=64"], figures(0.95, 0.94, 5000, 4.0))
    make_job(tmp_path, 1, [*common, "model.filters=16", "model.dense=64"], figures(0.97, 0.96, 9000))
    make_job(tmp_path, 2, [*common, "model.filters=32", "model.dense=64"], figures(0.97, 0.97, 20000))
    make_job(tmp_path, 3, [*common, "model.filters=64", "model.dense=64"], error="ConfigError: bad\n\nTraceback ...")
    make_job(tmp_path, 4, [*common, "model.filters=128", "model.dense=64"])  # no result: killed, or running
    return tmp_path


def rows(sweep: Path) -> list[dict]:
    with open(sweep / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_jobs_ranked_by_validation_accuracy_then_size_failed_last(sweep):
    write_summary(sweep)
    table = rows(sweep)
    assert [r["job"] for r in table] == ["1", "2", "0", "3", "4"]  # a tie on val/acc goes to the smaller net
    assert [r["rank"] for r in table] == ["1", "2", "3", "", ""]
    assert [r["status"] for r in table] == ["ok", "ok", "ok", "failed", "failed"]
    assert table[0]["val/acc"] == "0.97" and table[0]["parameters"] == "9000" and table[0]["threads"] == "1"
    assert table[3]["error"] == "ConfigError: bad"
    assert "no metrics.json" in table[4]["error"]
    # only the swept key gets a column; every job's full overrides are kept too
    assert "model.filters" in table[0] and "model.dense" not in table[0]
    assert table[0]["overrides"] == "data=synthetic model=cnn model.filters=16 model.dense=64"


def test_markdown_names_the_winner_its_margin_and_cost(sweep):
    write_summary(sweep)
    md = (sweep / "summary.md").read_text()
    assert "5 jobs: 3 finished, 2 failed." in md
    assert "Best: job 1 (model.filters=16): val/acc 0.9700, test/acc 0.9600, 9,000 parameters" in md
    assert "runner-up, job 2 (model.filters=32), by +0.0000 val/acc (-0.0100 test/acc), with 0.45x" in md
    assert "Every job: `data=synthetic` `model=cnn` `model.dense=64`" in md
    assert (sweep / "accuracy_vs_parameters.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_while_the_sweep_runs_a_job_without_results_is_running_not_failed(sweep):
    jobs = read_sweep(sweep, finished=False)
    assert {j.num: j.status for j in jobs} == {0: "ok", 1: "ok", 2: "ok", 3: "failed", 4: "running"}


def test_command_line_writes_and_prints_the_summary(sweep, capsys):
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "| 1 | 1 | ok | 16 |" in out
    assert all((sweep / name).is_file() for name in ("summary.csv", "summary.md", "accuracy_vs_parameters.png"))


@pytest.mark.parametrize("make, expected", [("missing", "is not a directory"), ("empty", "holds no job directory")])
def test_command_line_rejects_what_is_not_a_sweep(tmp_path, capsys, make, expected):
    target = tmp_path / "nothing"
    if make == "empty":
        target.mkdir()
    assert main([str(target)]) == 2
    err = capsys.readouterr().err
    assert f"sweep_dir='{target}'" in err and expected in err
