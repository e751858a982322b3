"""The sweep summary callback in real sweeps (``python train.py -m`` on synthetic data): kept up to date as jobs end,
the same as the summary on demand, a failing job listed as failed."""

from __future__ import annotations

import pytest

from mnist_lit.process.parallel import usable_cores
from tests.conftest import TINY, job_dirs, job_metrics, run_cli, summary_rows, synthetic_overrides


def test_grid_summary_agrees_with_each_jobs_metrics_best_first(grid):
    sweep_dir, _ = grid
    rows = summary_rows(sweep_dir)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    by_dir = {d.name: job_metrics(d) for d in job_dirs(sweep_dir)}
    for row in rows:
        m = by_dir[row["directory"]]
        for key in ("val/acc", "test/acc", "fit_seconds"):
            assert float(row[key]) == pytest.approx(m[key]), key
        assert int(row["parameters"]) == m["parameters"] and int(row["epochs"]) == m["epochs"]
        assert row["directory"].startswith(f"{row['job']}_cnn_f{row['model.filters']}_b2_k3_d{row['model.dense']}")
    ranked = [(-float(r["val/acc"]), int(r["parameters"])) for r in rows]
    assert ranked == sorted(ranked)
    assert "model.kernel_size" not in rows[0]  # fixed on the command line, so not a column
    md = (sweep_dir / "summary.md").read_text()
    assert f"Best: job {rows[0]['job']} (model.filters={rows[0]['model.filters']}" in md
    assert (sweep_dir / "accuracy_vs_parameters.png").read_bytes()[:4] == b"\x89PNG"


def test_summary_on_demand_matches_the_one_written_by_the_sweep(grid, tmp_path):
    sweep_dir, _ = grid
    written = (sweep_dir / "summary.csv").read_text()
    (sweep_dir / "summary.csv").unlink()
    done = run_cli("mnist_lit.sweep_summary", str(sweep_dir), check=False)
    assert done.returncode == 0, done.stderr
    assert (sweep_dir / "summary.csv").read_text() == written
    assert "| rank | job | status | model.filters | model.dense |" in done.stdout


def test_parallel_sweep_survives_a_failing_job(synthetic, tmp_path):
    # job 0 cannot work (a 29x29 kernel on 28x28 images); jobs 1 and 2 must still run and be summarised
    done = run_cli(
        "train.py",
        "-m",
        *synthetic_overrides(synthetic),
        "model=cnn",
        "model.filters=4",
        "model.dense=16",
        "model.kernel_size=29,3,5",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        check=False,
    )
    assert done.returncode != 0  # Hydra reports the failed job once the batch is done
    assert "Joblib.Parallel(n_jobs=2" in done.stdout
    failed, *finished = job_dirs(tmp_path)
    assert not (failed / "metrics.json").exists()
    assert "model.kernel_size=29" in (failed / "error.txt").read_text()
    for job in finished:
        assert job_metrics(job)["threads"] == max(1, usable_cores() // 2)  # each job's share of the cores
    rows = summary_rows(tmp_path)
    assert [(r["job"], r["status"]) for r in rows][-1] == ("0", "failed")
    assert {r["job"] for r in rows if r["status"] == "ok"} == {"1", "2"}
    assert "ConfigError: model.kernel_size=29" in rows[-1]["error"]
    assert "3 jobs: 2 finished, 1 failed." in (tmp_path / "summary.md").read_text()


def test_a_grid_job_refused_for_its_own_value_is_one_line_and_the_others_run(synthetic, tmp_path):
    done = run_cli("train.py", "-m", *synthetic_overrides(synthetic), "model=cnn", "model.filters=2", "model.dense=8",
                   "model.kernel_size=29,3", *TINY, f"hydra.sweep.dir={tmp_path}", check=False)  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(errors) == 2, done.stderr
    assert errors[0].startswith("Error: job 0 (") and " model.kernel_size=29 " in errors[0].split("): ")[0]
    assert "): model.kernel_size=29 with model.blocks=2" in errors[0]
    assert errors[1] == f"Error: 1 of the sweep's 2 jobs failed: {tmp_path / 'summary.md'} lists each error"
    assert [r["status"] for r in summary_rows(tmp_path)] == ["ok", "failed"]
