"""The report folder: every file written after a fit, replaced whole, and refused where it is not a report."""

from __future__ import annotations

import pytest
from PIL import Image

from mnist_lit.config.checks import command_config
from mnist_lit.errors import ConfigError, UserError
from mnist_lit.evaluation.evaluate import evaluate
from mnist_lit.evaluation.report import REPORT
from tests.conftest import REPORT_FILES, assert_refused, run_cli, snapshot


def test_report_folder_with_the_report_file_names_but_not_a_report_is_refused(tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "report.md").write_text("# My report\n")
    (mine / "classification_report.json").write_text("{}")
    with pytest.raises(UserError, match="holds files that are not an earlier report"):
        REPORT.check(f"report_dir={mine}", mine)


def test_evaluate_after_fit_writes_every_file(evaluated_run):
    report_dir = evaluated_run["dir"] / "report"
    for name in REPORT_FILES:
        assert (report_dir / name).stat().st_size > 0, name
        if name.endswith(".png"):
            with Image.open(report_dir / name) as image:
                image.verify()
    assert not [p for p in report_dir.parent.iterdir() if p.name.startswith(".report")]  # no leftovers
    markdown = (report_dir / "report.md").read_text()
    for name in REPORT_FILES[:-1]:
        assert f"({name})" in markdown, name
    stdout = evaluated_run["stdout"]
    assert "Classification report (test split" in stdout and "Most frequent confusions" in stdout


def test_evaluate_refuses_report_dir_that_is_the_run_and_keeps_it(plain_run_copy, tmp_path):
    before = snapshot(plain_run_copy)
    done = run_cli("evaluate.py", f"run_dir={plain_run_copy}", f"report_dir={plain_run_copy}", check=False)
    assert_refused(done, f"report_dir={plain_run_copy} is not allowed: that folder holds files that are not an earlier")
    assert snapshot(plain_run_copy) == before


def test_report_dir_refusals(plain_run, tmp_path):
    (tmp_path / "a-file").write_text("mine")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    report = tmp_path / "earlier"
    evaluate(command_config("eval", run_dir=str(plain_run), report_dir=str(report), tensorboard=False))
    (report / "notes.txt").write_text("added by hand")  # no longer only a report: refused from now on
    cases = [
        ("a-file", "is not allowed: it is a file"),
        ("mine", "holds files that are not an earlier report"),
        ("earlier", "holds files that are not an earlier report"),
        ("a-file/report", "cannot be written: " + str(tmp_path / "a-file") + " is a file"),
    ]
    for name, expected in cases:
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
            REPORT.check(f"report_dir={tmp_path / name}", tmp_path / name)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "a-file").read_text() == "mine"


def test_earlier_report_is_replaced_whole(plain_run, tmp_path):
    report = tmp_path / "report"
    cfg = command_config("eval", run_dir=str(plain_run), report_dir=str(report), tensorboard=False)
    evaluate(cfg)
    first = snapshot(report)
    evaluate(command_config("eval", run_dir=str(plain_run), report_dir=str(report), tensorboard=False, split="val"))
    assert snapshot(report).keys() == first.keys() and snapshot(report) != first
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary or old folder left
