"""Pruning in an Optuna sweep: a hopeless trial stopped after its first epoch, and the study shown by
optuna-dashboard."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from hydra_plugins.mnist_lit_optuna_sweeper.study import open_storage
from tests.conftest import SPACE, job_trials, load_study, run_cli, summary_rows, synthetic_overrides


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pruned(synthetic, tmp_path_factory) -> tuple[Path, Path]:
    """A study whose first trial did well at every epoch; the sweep's one trial, at chance, is pruned after epoch 1."""
    base = tmp_path_factory.mktemp("pruned")
    storage, sweep_dir = base / "study.journal", base / "sweep"
    study = optuna.create_study(study_name="cnn_optuna_quick", storage=open_storage(str(storage)), direction="maximize")
    space = {"model.filters": CategoricalDistribution([2, 4]), "model.dense": CategoricalDistribution([8, 16])}
    study.add_trial(
        optuna.trial.create_trial(
            params={"model.filters": 4, "model.dense": 16},
            distributions=space,
            value=0.99,
            intermediate_values={1: 0.98, 2: 0.99},
        )
    )
    run_cli(
        "train.py",
        "-m",
        *synthetic_overrides(synthetic),
        "hparams_search=cnn_optuna_quick",
        *SPACE,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=1",
        "optimizer.lr=0.000001",  # learns nothing in two epochs: below the first trial at epoch 1
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.pruner=median",
        "hydra.sweeper.pruner_args={n_startup_trials: 1}",
        "hydra/launcher=submitit_local",  # the job runs in a process of its own, and reaches its trial from there
        "hydra.launcher.timeout_min=10",
        "threads=1",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={sweep_dir}",
    )
    return storage, sweep_dir


def test_a_hopeless_trial_is_pruned_after_its_first_epoch(pruned):
    storage, sweep_dir = pruned
    trial = load_study(storage).trials[1]
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
    (job_dir,) = job_trials(sweep_dir).values()
    metrics = json.loads((job_dir / "metrics.json").read_text())
    assert metrics["pruned_epoch"] == 1 and metrics["epochs"] == 1 and metrics["test/acc"] is None
    assert metrics["stop_reason"] == "pruned by Optuna's median pruner after epoch 1"
    assert trial.intermediate_values[1] == pytest.approx(metrics["history"][0]["val/acc"])
    rows = {int(r["trial"]): r for r in summary_rows(sweep_dir)}
    assert rows[1]["status"] == "pruned" and rows[1]["error"] == "pruned after epoch 1"
    assert rows[0]["status"] == "ok"  # the study's earlier trial, listed from the study
    assert "1 pruned" in (sweep_dir / "summary.md").read_text()
    assert len(list((sweep_dir / ".submitit").glob("*/*_result.pkl"))) == 1  # ran as a submitit job


def test_optuna_dashboard_lists_the_study_of_a_sweep(pruned):
    storage, _ = pruned
    port = free_port()
    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    server = subprocess.Popen(
        [str(dashboard), str(storage), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, answer = time.monotonic() + 60, None
        while answer is None and time.monotonic() < deadline:
            assert server.poll() is None, f"optuna-dashboard exited: {server.stderr.read()[-2000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as response:
                    answer = json.load(response)
            except OSError:
                time.sleep(0.5)
        (study,) = answer["study_summaries"]
        assert study["study_name"] == "cnn_optuna_quick"
        assert study["directions"] == ["maximize"]
    finally:
        server.terminate()
        server.wait(timeout=20)
        server.stderr.close()  # not left to the collector, which would warn inside a later test's command
