"""Profilers: Lightning's profilers replace the project's null profiler and write their reports."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli, synthetic_overrides, train_recorded


@pytest.mark.parametrize("profiler, marker", [("simple", "FIT Profiler Report"), ("advanced", "Profile stats for")])
def test_lightning_profilers(synthetic, tmp_path, profiler, marker):
    _, _, done = train_recorded(
        synthetic, tmp_path, f"trainer.profiler={profiler}", "trainer.max_epochs=1", "trainer.limit_train_batches=3"
    )
    report = done.stdout + done.stderr
    assert marker in report and "training_step" in report


def test_a_lightning_profiler_replaces_the_null_one(synthetic, tmp_path):
    """The default profiler profiles nothing; ``trainer.profiler=simple`` gives Lightning's report."""
    overrides = [*synthetic_overrides(synthetic), "trainer.max_epochs=1", "evaluate_after_fit=false"]
    quiet = run_cli("train.py", *overrides, f"hydra.run.dir={tmp_path / 'null'}")
    profiled = run_cli("train.py", *overrides, f"hydra.run.dir={tmp_path / 'simple'}", "trainer.profiler=simple")
    assert "Profiler Report" not in quiet.stdout + quiet.stderr
    report = profiled.stdout + profiled.stderr
    assert "FIT Profiler Report" in report and "run_training_epoch" in report
    # the per-hook timings that the null profiler skips
    assert "[Callback]ModelCheckpoint" in report and "on_before_optimizer_step" in report
