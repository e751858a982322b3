"""``python train.py -m``: a grid sweep runs every combination in its own directory, also through submitit's local
launcher; the same command again in its sweep directory keeps the finished jobs and goes on with the others; a
cross-validation (``cv=kfold``) runs every fold of the training images."""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from unittest import mock

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from mnist_lit import training
from tests.conftest import (
    N_TRAIN,
    TINY,
    armed_interrupt,
    assert_refused,
    job_dirs,
    job_metrics,
    run_cli,
    run_process,
    snapshot,
    summary_rows,
    synthetic_overrides,
)


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


def test_the_same_multirun_again_keeps_its_finished_jobs_and_goes_on_with_the_others(synthetic, tmp_path):
    sweep = tmp_path / "sweep"
    probe = armed_interrupt(tmp_path / "armed", hook="never,on_train_epoch_end,never")  # job 1, in its epoch 2
    args = ["-m", *synthetic_overrides(synthetic), "model.hidden=16", "trainer.max_epochs=2",
            "callbacks.early_stopping.patience=100", *probe, "optimized_metric=val/acc",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    first = run_process("train.py", *args, check=False)
    assert first.returncode == 130, first.stderr[-3000:]
    assert f"the same command with hydra.sweep.dir={sweep} goes on with the jobs not finished" in first.stderr
    finished, stopped = job_dirs(sweep)  # job 2 never started
    assert (stopped / "checkpoints" / "last.ckpt").is_file() and not (stopped / "metrics.json").exists()
    before = {name: snapshot(finished / name) for name in (".hydra", "checkpoints")}
    recorded = (finished / "metrics.json").read_bytes(), (finished / "metrics.json").stat().st_mtime_ns

    (tmp_path / "armed").unlink()
    returned = []

    def spy(*args):
        returned.append(result := recorded_result(*args))
        return result

    recorded_result = training.recorded_result
    with (
        mock.patch.object(training, "recorded_result", side_effect=spy),
        mock.patch.object(training, "build", wraps=training.build) as build,
    ):
        again = run_cli("train.py", *args)
    assert build.call_count == 2  # jobs 1 and 2: the finished job 0 builds no trainer
    assert returned == [job_metrics(finished)["val/acc"]]  # its recorded objective, for the sweeper
    assert ((finished / "metrics.json").read_bytes(), (finished / "metrics.json").stat().st_mtime_ns) == recorded
    assert {name: snapshot(finished / name) for name in before} == before
    assert "[job 0] Epoch" not in again.stdout
    assert f"[job 1] Resuming from {stopped / 'checkpoints' / 'last.ckpt'}" in again.stdout
    assert "[job 1] Epoch 1/2" not in again.stdout and "[job 1] Epoch 2/2" in again.stdout
    assert [r["epoch"] for r in job_metrics(stopped)["history"]] == [1, 2]
    assert job_metrics(job_dirs(sweep)[2])["epochs"] == 2  # job 2 started afresh
    assert [row["status"] for row in summary_rows(sweep)] == ["ok", "ok", "ok"]

    # Another command in that sweep's folder is refused, naming the sweep's own overrides.
    kept = snapshot(sweep)
    other = run_cli("train.py", *[a.replace("optimized_metric=val/acc", "seed=3") for a in args], check=False)
    assert_refused(other, f"hydra.sweep.dir={sweep} already holds an earlier sweep")
    assert "or go on with that sweep by running its own command again (its overrides: data=synthetic" in other.stderr
    assert snapshot(sweep) == kept


def session_start(job_dir):
    """The HParams session a run's events declare: its group's name and its hyperparameters."""
    events = EventAccumulator(str(job_dir), size_guidance={"tensors": 0})
    events.Reload()
    content = events.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
    return metadata.parse_session_start_info_plugin_data(content)


def test_a_kfold_sweep_validates_on_each_fold_and_summarises_their_mean(synthetic, tmp_path):
    sweep = ("cv=kfold", "cv.folds=3", "model.hidden=8", f"hydra.sweep.dir={tmp_path}")
    done = run_cli("train.py", "-m", *synthetic_overrides(synthetic), *sweep, *TINY)
    jobs = job_dirs(tmp_path)
    assert [j.name for j in jobs] == ["0_mlp_h8_s42_fold0", "1_mlp_h8_s42_fold1", "2_mlp_h8_s42_fold2"]
    # Each job's data, built from its saved config: the validation sets partition the training images.
    folds, val_labels = Counter(), []
    for job in jobs:
        dm = instantiate(OmegaConf.load(job / ".hydra" / "config.yaml").data)
        splits = dm.splits()
        pool = Counter(image.numpy().tobytes() for image in dm.read()[0].images)
        val = Counter(image.numpy().tobytes() for image in splits["val"].images)
        assert val + Counter(image.numpy().tobytes() for image in splits["train"].images) == pool
        folds += val
        val_labels.append(torch.bincount(splits["val"].labels, minlength=10))
    assert folds == pool and folds.total() == N_TRAIN  # disjoint, together every training image
    per_class = torch.stack(val_labels)
    assert (per_class.max(dim=0).values - per_class.min(dim=0).values).max() <= 1
    # The summary: the folds' mean and sample standard deviation, from the jobs' metrics.json.
    metrics = [job_metrics(j) for j in jobs]
    with open(tmp_path / "folds.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    for key in ("val/acc", "test/acc"):
        assert float(row[f"{key} mean"]) == pytest.approx(statistics.fmean(m[key] for m in metrics))
        assert float(row[f"{key} std"]) == pytest.approx(statistics.stdev(m[key] for m in metrics))
    assert row["folds"] == "3" and sorted(r["cv.fold"] for r in summary_rows(tmp_path)) == ["0", "1", "2"]
    mean = statistics.fmean(m["val/acc"] for m in metrics)
    assert f"Cross-validation, 3 folds: val/acc {mean:.4f} ± " in (tmp_path / "summary.md").read_text()
    assert f"Cross-validation, 3 folds: val/acc {mean:.4f}" in done.stdout
    # TensorBoard's HParams tab: the folds are one session group, each with its fold.
    sessions = [session_start(j) for j in jobs]
    assert {s.group_name for s in sessions} == {tmp_path.name}
    assert [s.hparams["cv.fold"].number_value for s in sessions] == [0, 1, 2]


def test_more_folds_than_a_class_has_images_are_refused_before_the_sweep(synthetic, tmp_path):
    sweep = ("cv=kfold", "cv.folds=51", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    done = run_cli("train.py", "-m", *synthetic_overrides(synthetic), *sweep, *TINY, check=False)
    assert_refused(done, "cv.folds=51 (data.folds) is not allowed: class '0' has only 50 training images")
    assert list(tmp_path.iterdir()) == []
