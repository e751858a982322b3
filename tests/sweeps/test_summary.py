"""A sweep's summary on hand-made job directories: ranking, failed and running jobs, a cross-validation's folds,
its own files replaced only."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest
from PIL import Image

from mnist_lit.errors import UserError
from mnist_lit.sweeps.summary import SUMMARY_FILES, read_sweep, write_summary
from tests.conftest import figures, make_job, one_job_sweep, snapshot


def rows(sweep: Path, name: str = "summary.csv") -> list[dict]:
    with open(sweep / name, newline="") as f:
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


def test_summary_replaces_only_its_own_files(tmp_path):
    root = one_job_sweep(tmp_path)
    write_summary(root)
    write_summary(root)  # its own earlier files: replaced
    for name, content in [
        ("summary.md", b"# My notes on this sweep\n"),
        ("summary.csv", b"rank,job,status,my own column\n1,0,ok,x\n"),  # starts like the summary's header
        ("accuracy_vs_parameters.png", None),
    ]:
        path = root / name
        if content is None:
            Image.new("RGB", (840, 540), "white").save(path)  # a PNG of the same size, not the summary's plot
        else:
            path.write_bytes(content)
        before = snapshot(root)
        with pytest.raises(UserError, match=f"it holds {name} that this command did not write"):
            write_summary(root)
        assert snapshot(root) == before
        path.unlink()
    write_summary(root)
    assert all((root / name).is_file() for name in SUMMARY_FILES)


def test_unreadable_job_files_are_listed_as_failed_jobs(tmp_path):
    make_job(tmp_path, 0, ["model.filters=8"], metrics=figures(0.9, 0.9, 100))
    (make_job(tmp_path, 1, ["model.filters=16"]) / "metrics.json").write_text("{half")
    (make_job(tmp_path, 2, ["model.filters=32"]) / ".hydra" / "overrides.yaml").write_text("[unclosed")
    jobs = {job.num: job for job in read_sweep(tmp_path)}
    assert jobs[0].status == "ok"
    assert jobs[1].status == "failed" and jobs[1].error.startswith("metrics.json cannot be read")
    assert jobs[2].status == "failed" and jobs[2].error.startswith("overrides.yaml cannot be read")


def test_folds_of_each_setting_give_their_mean_and_standard_deviation(tmp_path):
    accuracies = {"16": [(0.90, 0.89), (0.92, 0.90), (0.94, 0.91)], "32": [(0.95, 0.93), (0.97, 0.94), (0.96, 0.95)]}
    num = 0
    for filters, folds in accuracies.items():
        for fold, (val, test) in enumerate(folds):
            overrides = ["cv=kfold", f"model.filters={filters}", f"cv.fold={fold}"]
            make_job(tmp_path, num, overrides, metrics=figures(val, test, 1000))
            num += 1
    make_job(tmp_path, num, ["cv=kfold", "model.filters=64", "cv.fold=0"], error="ConfigError: bad")
    write_summary(tmp_path)
    table = rows(tmp_path, "folds.csv")
    assert [(r["rank"], r["model.filters"], r["folds"], r["jobs"]) for r in table] == [
        ("1", "32", "3", "3 4 5"),
        ("2", "16", "3", "0 1 2"),
        ("3", "64", "0 of 1", "6"),
    ]
    assert "cv.fold" not in table[0]
    for row in table[:2]:
        folds = accuracies[row["model.filters"]]
        for i, column in enumerate(("val/acc", "test/acc")):
            values = [pair[i] for pair in folds]
            assert float(row[f"{column} mean"]) == pytest.approx(statistics.fmean(values))
            assert float(row[f"{column} std"]) == pytest.approx(statistics.stdev(values))
    assert table[2]["val/acc mean"] == ""
    md = (tmp_path / "summary.md").read_text()
    assert "Cross-validation, best mean of 3 settings: model.filters=32 (3 folds): val/acc 0.9600 ± 0.0100" in md
    assert "| 1 | 32 | 3 | 0.9600 | 0.0100 | 0.9400 | 0.0100 | 3 4 5 |" in md
    write_summary(tmp_path)  # its own folds.csv: replaced
    (tmp_path / "folds.csv").write_text("rank,mine\n")
    with pytest.raises(UserError, match="it holds folds.csv that this command did not write"):
        write_summary(tmp_path)
