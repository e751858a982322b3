"""``python train.py -m``: a grid sweep runs every combination in its own directory, also through submitit's local
launcher."""

from __future__ import annotations

from tests.conftest import TINY, job_dirs, job_metrics, run_cli, summary_rows, synthetic_overrides


def test_grid_sweep_runs_every_combination_in_its_own_directory(grid):
    sweep_dir, done = grid
    names = [d.name for d in job_dirs(sweep_dir)]
    assert names == [
        "0_cnn_f2_b2_k3_d8_s42",
        "1_cnn_f2_b2_k3_d16_s42",
        "2_cnn_f4_b2_k3_d8_s42",
        "3_cnn_f4_b2_k3_d16_s42",
    ]
    for job in job_dirs(sweep_dir):
        m = job_metrics(job)
        assert m["epochs"] == 1 and 0 <= m["val/acc"] <= 1 and m["parameters"] > 0
        assert list(job.glob("events.out.tfevents.*")), job
    assert f"Sweep summary (0 failed): {sweep_dir / 'summary.md'}" in done.stdout
    for num in range(4):  # each job's lines carry its number
        assert f"[job {num}] Epoch 1/1  train/loss" in done.stdout


def test_submitit_local_launcher_runs_a_sweep(synthetic, tmp_path):
    run_cli(
        "train.py",
        "-m",
        *synthetic_overrides(synthetic),
        "model=cnn",
        "model.filters=2,4",
        "model.dense=8",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "threads=1",  # submitit's local executor starts every job at once
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
    )
    jobs = job_dirs(tmp_path)
    assert [job_metrics(j)["threads"] for j in jobs] == [1, 1]
    assert len(list((tmp_path / ".submitit").glob("*/*_result.pkl"))) == 2  # ran as submitit jobs
    assert [r["status"] for r in summary_rows(tmp_path)] == ["ok", "ok"]
