"""``python -m mnist_lit.sweep_summary``: writes and prints a sweep's summary, refuses what is not a sweep, keeps a
user's file."""

from __future__ import annotations

import pytest

from mnist_lit.sweep_summary import main
from tests.conftest import assert_refused, figures, make_job, one_job_sweep, run_cli, snapshot


def test_cli_sweep_summary_keeps_a_users_summary(tmp_path):
    root = one_job_sweep(tmp_path)
    (root / "summary.md").write_text("# mine\n")
    before = snapshot(root)
    done = run_cli("mnist_lit.sweep_summary", str(root), check=False)
    assert_refused(done, "summary.md that this command did not write")
    assert snapshot(root) == before


def test_command_line_writes_and_prints_the_summary(sweep, capsys):
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "| 1 | 1 | ok | 16 |" in out
    assert all((sweep / name).is_file() for name in ("summary.csv", "summary.md", "accuracy_vs_parameters.png"))


@pytest.mark.parametrize(
    "make, expected",
    [("missing", "is not a directory"), ("empty", "holds no job directory"), ("run", "is one run's folder")],
)
def test_command_line_rejects_what_is_not_a_sweep(tmp_path, capsys, make, expected):
    target = tmp_path / "nothing"
    if make == "empty":
        target.mkdir()
    if make == "run":  # a run's own .hydra/overrides.yaml, as the job folders of a sweep hold theirs
        make_job(tmp_path, 0, ["seed=1"], figures(0.9, 0.9, 100)).rename(target)
    with pytest.raises(SystemExit) as ended:
        main([str(target)])
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert f"sweep_dir='{target}'" in err and expected in err
    assert not (target / "summary.md").exists()
