"""The project's OmegaConf resolvers as Hydra resolves them: threads per sweep job, run directories per start."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig

from mnist_lit.process.parallel import parallel_jobs, threads_per_job, usable_cores
from tests.conftest import composed


def resolved_threads(*overrides: str) -> int | None:
    cfg = composed(*overrides)
    HydraConfig.instance().set_config(cfg)  # as in a job: ${hydra:...} reads the job's Hydra config
    return cfg.threads


def test_threads_follow_the_joblib_launchers_jobs():
    assert resolved_threads() is None  # one run at a time: torch's default
    assert resolved_threads("hydra/launcher=joblib", "hydra.launcher.n_jobs=2") == max(1, usable_cores() // 2)
    assert resolved_threads("hydra/launcher=joblib") == 1  # n_jobs=-1: a job per core, a thread each
    assert resolved_threads("hydra/launcher=joblib", "threads=3") == 3
    assert parallel_jobs(-2) == max(1, usable_cores() - 1) and threads_per_job(10**6) == 1


def test_runs_and_sweeps_started_in_the_same_second_get_their_own_directories():
    first, second = composed(), composed()
    # Resolved in the same second (the configs are built milliseconds apart), as two users' runs might be.
    dirs = [(c.hydra.run.dir, c.hydra.sweep.dir) for c in (first, second)]
    assert dirs[0][0] != dirs[1][0] and dirs[0][1] != dirs[1][1]
    assert Path(dirs[0][0]).parent == Path(dirs[1][0]).parent  # same run name, different time stamps


def test_mlflow_keeps_its_files_beside_a_local_store_and_leaves_a_servers_to_the_server(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    local = composed("logger=mlflow").logger.mlflow
    log_dir = composed().paths.log_dir
    assert (local.tracking_uri, local.artifact_location) == (f"sqlite:///{log_dir}/mlflow.db", f"{log_dir}/mlartifacts")
    server = composed("logger=mlflow", "logger.mlflow.tracking_uri=http://host:5000").logger.mlflow
    assert server.artifact_location is None  # the server keeps them where it is set up to
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://host")  # MLflow's own variable, where it is set
    server = composed("logger=mlflow").logger.mlflow
    assert (server.tracking_uri, server.artifact_location) == ("https://host", None)
