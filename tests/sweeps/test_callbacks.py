"""Real sweeps through ``python train.py -m`` on synthetic data: grid, Optuna, joblib, a failing job, TensorBoard.

Every job is a tiny CNN trained for one epoch, so each sweep takes seconds plus process start-up.
"""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from mnist_lit.process.parallel import usable_cores
from tests.conftest import run_cli, run_process, synthetic_overrides

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=1.0"]
# What says where a run's data came from, not what the run was: never an HParams column.
EXCLUDED = ("_target_", "checksums", "mirrors", "data_dir", "log_dir", "dir")


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))


def summary_rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def grid(synthetic, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The quick grid preset narrowed on the command line to 2 x 2 tiny networks, jobs one after another."""
    sweep_dir = tmp_path_factory.mktemp("grid") / "sweep"
    done = run_cli(
        "train.py",
        "-m",
        *synthetic_overrides(synthetic),
        "hparams_search=cnn_grid_quick",
        "model.filters=2,4",
        "model.kernel_size=3",
        "model.dense=8,16",
        *TINY,
        f"hydra.sweep.dir={sweep_dir}",
    )
    return sweep_dir, done


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
        m = metrics(job)
        assert m["epochs"] == 1 and 0 <= m["val/acc"] <= 1 and m["parameters"] > 0
        assert list(job.glob("events.out.tfevents.*")), job
    assert f"Sweep summary (0 failed): {sweep_dir / 'summary.md'}" in done.stdout
    for num in range(4):  # each job's lines carry its number
        assert f"[job {num}] Epoch 1/1  train/loss" in done.stdout


def test_grid_summary_agrees_with_each_jobs_metrics_best_first(grid):
    sweep_dir, _ = grid
    rows = summary_rows(sweep_dir)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    by_dir = {d.name: metrics(d) for d in job_dirs(sweep_dir)}
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_tensorboard_lists_every_run_with_its_scalars_and_hyperparameters(grid):
    sweep_dir, _ = grid
    runs = {d.name for d in job_dirs(sweep_dir)}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep_dir)]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--load_fast=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # TensorBoard answers before it has read every event file: poll until it lists them all.
        deadline, tags, last_error = time.monotonic() + 90, {}, None
        while time.monotonic() < deadline:
            assert server.poll() is None, f"tensorboard exited: {server.stderr.read()[-2000:]}"
            try:
                tags = get_json(f"{base}/data/plugin/scalars/tags")
                best_runs = {f"{run}/best" for run in runs}
                if set(tags) == runs | best_runs and all("test/acc" in tags[run] for run in runs):
                    break
            except OSError as e:
                last_error = e
            time.sleep(1)
        assert set(get_json(f"{base}/data/runs")) == runs | best_runs, last_error
        for run in runs:  # the Scalars tab: the curves and the test figures, nothing that sorts before them
            assert set(tags[run]) == {"train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"}
            assert set(tags[f"{run}/best"]) == {"val/loss", "val/acc"}  # a point on the validation curves
        # The HParams tab: one session per run, with its swept values and final accuracies.
        request = {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"], "colParams": []}
        groups = get_json(f"{base}/data/plugin/hparams/session_groups", {**request, "startIndex": 0, "sliceSize": 100})
        sessions = {g["name"]: g for g in groups["sessionGroups"]}
        assert set(sessions) == runs
        for run, group in sessions.items():
            expected = metrics(sweep_dir / run)
            values = {(m["name"].get("group", ""), m["name"]["tag"]): m["value"] for m in group["metricValues"]}
            assert values["best", "val/acc"] == pytest.approx(expected["val/acc"], rel=1e-5)
            assert values["", "test/acc"] == pytest.approx(expected["test/acc"], rel=1e-5)
            assert group["hparams"]["run.epochs"] == expected["epochs"]
            assert f"_cnn_f{int(group['hparams']['model.filters'])}_" in run
            assert f"_d{int(group['hparams']['model.dense'])}_" in run
            assert {"model.kernel_size", "optimizer.lr", "data.batch_size", "trainer.precision", "seed"} <= set(
                group["hparams"]
            )
            assert not [k for k in group["hparams"] if any(word in k for word in EXCLUDED)], group["hparams"]
        # The tab's columns: the swept keys first (marked as differing), then the accuracies.
        experiment = get_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        names = [info["name"] for info in experiment["hparamInfos"]]
        differing = [info["name"] for info in experiment["hparamInfos"] if info.get("differs")]
        assert differing == ["model.dense", "model.filters"], differing  # kernel_size was fixed on the command line
        assert names[:2] == differing
        assert not [k for k in names if any(word in k for word in EXCLUDED)], names
        metric_names = [info["displayName"] for info in experiment["metricInfos"]]
        assert metric_names[:2] == ["val/acc (best epoch)", "test/acc"], metric_names
        # The Text tab's table is escaped Markdown: underscores stay underscores, not italics.
        run = sorted(runs)[0]
        text = get_json(f"{base}/data/plugin/text/text?run={run}&tag=hyperparameters/text_summary")[0]["text"]
        assert "model.kernel_size" in text and "<em>" not in text, text[:500]
        # The Custom Scalars tab: train against validation on one chart each.
        layout = json.dumps(get_json(f"{base}/data/plugin/custom_scalars/layout"))
        for tag in ("train/loss", "val/loss", "train/acc", "val/acc"):
            assert tag in layout, layout
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_optuna_sweep_runs_n_trials_and_reports_the_best(synthetic, tmp_path):
    done = run_cli(
        "train.py",
        "-m",
        *synthetic_overrides(synthetic),
        "hparams_search=cnn_optuna_quick",
        "hydra.sweeper.n_trials=3",
        "model.filters=choice(2, 4)",
        "model.dense=choice(8, 16)",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        f"paths.log_dir={tmp_path / 'logs'}",  # the study's file: a new study for every test run
    )
    jobs = job_dirs(tmp_path)
    assert len(jobs) == 3
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    val_accs = [metrics(j)["val/acc"] for j in jobs]
    assert results["best_value"] == pytest.approx(max(val_accs))
    best_overrides = set()
    for job in jobs:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        sampled = dict(o.split("=", 1) for o in overrides)
        assert sampled["model.filters"] in {"2", "4"} and sampled["data.batch_size"] in {"32", "64", "128"}
        assert 1e-4 <= float(sampled["optimizer.lr"]) <= 1e-2
        if metrics(job)["val/acc"] == max(val_accs):
            best_overrides.add(tuple(sampled[k] for k in results["best_params"]))
    assert tuple(str(v) for v in results["best_params"].values()) in best_overrides
    assert "Sampler: TPESampler" in done.stdout
    md = (tmp_path / "summary.md").read_text()
    assert f"Optuna's best trial: {results['best_value']:.4f}" in md and "3 jobs: 3 finished, 0 failed" in md


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
        assert metrics(job)["threads"] == max(1, usable_cores() // 2)  # each job's share of the cores
    rows = summary_rows(tmp_path)
    assert [(r["job"], r["status"]) for r in rows][-1] == ("0", "failed")
    assert {r["job"] for r in rows if r["status"] == "ok"} == {"1", "2"}
    assert "ConfigError: model.kernel_size=29" in rows[-1]["error"]
    assert "3 jobs: 2 finished, 1 failed." in (tmp_path / "summary.md").read_text()


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
    assert [metrics(j)["threads"] for j in jobs] == [1, 1]
    assert len(list((tmp_path / ".submitit").glob("*/*_result.pkl"))) == 2  # ran as submitit jobs
    assert [r["status"] for r in summary_rows(tmp_path)] == ["ok", "ok"]


def test_ddp_on_cpu_trains_one_model_into_one_run_directory(synthetic, tmp_path):
    done = run_process(  # its own process: rank 0 joins a process group for the rest of its life
        "train.py",
        *synthetic_overrides(synthetic),
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *TINY,
        f"paths.log_dir={tmp_path}",  # no hydra.run.dir: each process would otherwise pick its own timestamp
    )
    output = done.stdout + done.stderr
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in output and "cpu x2" in done.stdout.splitlines()[0]
    assert "sync_dist=True" not in output  # torchmetrics reduces the epoch metrics across processes
    (run_dir,) = (tmp_path / "runs" / "mlp_h128_s42").iterdir()
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["mlp_h128_s42"]
    assert metrics(run_dir)["epochs"] == 1 and len(list(run_dir.rglob("metrics.json"))) == 1
    assert len(list(run_dir.rglob(".hydra"))) == 1
    writers = {p.name.split(".")[-2] for p in run_dir.glob("events.out.tfevents.*")}
    assert len(writers) == 1  # the process id in the file names: only rank 0 writes TensorBoard events
    # rank 1 logs to its own file, and only warnings
    assert "INFO" not in (run_dir / "train_ddp_process_1.log").read_text()
    assert output.count("MNIST: 400 training and 100 validation images") == 1
