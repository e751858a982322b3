"""``python evaluate.py``: bad input ends in one error line without a traceback."""

from __future__ import annotations

from tests.conftest import run_cli


def test_cli_rejects_bad_input_without_a_traceback(evaluated_run, tmp_path):
    run_dir = evaluated_run["dir"]
    done = run_cli("evaluate.py", f"run_dir={run_dir}", "split=foo", f"report_dir={tmp_path}/r", check=False)
    assert done.returncode == 2
    assert "Error: split='foo' is not allowed: it must be one of 'test', 'val'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()


def test_cli_rejects_an_ensemble_of_one_without_a_traceback(runs, tmp_path):
    ckpt = runs[0] / "checkpoints" / "best.ckpt"
    done = run_cli("evaluate.py", f"ckpt_paths=[{ckpt}]", f"report_dir={tmp_path / 'r'}", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: ckpt_paths=")
    assert not (tmp_path / "r").exists()
