"""The sweep presets and settings as Hydra composes them: grid sizes, Optuna, threads, directories, SLURM."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mnist_lit.config.checks import PROJECT_ROOT
from mnist_lit.errors import ConfigError
from mnist_lit.process.parallel import check_ddp_launch, parallel_jobs, set_threads, threads_per_job, usable_cores

CONF = PROJECT_ROOT / "conf"


def composed(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def grid_size(cfg: DictConfig) -> int:
    return math.prod(len(str(v).split(",")) for v in cfg.hydra.sweeper.params.values())


@pytest.mark.parametrize("preset, jobs, epochs, fraction", [("cnn_grid", 18, 20, 1.0), ("cnn_grid_quick", 12, 2, 0.25)])
def test_grid_presets(preset, jobs, epochs, fraction):
    cfg = composed(f"hparams_search={preset}")
    assert cfg.model.arch == "cnn"
    assert set(cfg.hydra.sweeper.params) == {"model.filters", "model.kernel_size", "model.dense"}
    assert grid_size(cfg) == jobs
    assert cfg.trainer.max_epochs == epochs and cfg.trainer.limit_train_batches == fraction


@pytest.mark.parametrize("preset, trials, epochs", [("cnn_optuna", 30, 20), ("cnn_optuna_quick", 12, 2)])
def test_optuna_presets_maximise_validation_accuracy_with_a_seeded_tpe(preset, trials, epochs):
    cfg = composed(f"hparams_search={preset}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed == 42 and sweeper.direction == "maximize" and cfg.optimized_metric == "val/acc"
    assert sweeper.n_trials == trials and cfg.trainer.max_epochs == epochs
    assert {"model.filters", "model.kernel_size", "model.dense", "optimizer.lr", "data.batch_size"} == set(
        sweeper.params
    )
    assert sweeper.max_failure_rate == 1.0  # a failed trial does not end the study
    assert sweeper.n_jobs == 1  # trials asked for one at a time without a parallel launcher
    assert (
        composed(f"hparams_search={preset}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2").hydra.sweeper.n_jobs
        == 2
    )


def resolved_threads(*overrides: str) -> int | None:
    cfg = composed(*overrides)
    HydraConfig.instance().set_config(cfg)  # as in a job: ${hydra:...} reads the job's Hydra config
    try:
        return cfg.threads
    finally:
        HydraConfig.instance().cfg = None


def test_threads_follow_the_joblib_launchers_jobs():
    assert resolved_threads() is None  # one run at a time: torch's default
    assert resolved_threads("hydra/launcher=joblib", "hydra.launcher.n_jobs=2") == max(1, usable_cores() // 2)
    assert resolved_threads("hydra/launcher=joblib") == 1  # n_jobs=-1: a job per core, a thread each
    assert resolved_threads("hydra/launcher=joblib", "threads=3") == 3
    assert parallel_jobs(-2) == max(1, usable_cores() - 1) and threads_per_job(10**6) == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True])
def test_bad_threads_name_the_key_and_what_is_allowed(bad):
    with pytest.raises(ConfigError, match=r"threads=.* is not allowed: it must be an integer >= 1, or null"):
        set_threads(bad)


def test_runs_and_sweeps_started_in_the_same_second_get_their_own_directories():
    first, second = composed(), composed()
    # Resolved in the same second (the configs are built milliseconds apart), as two users' runs might be.
    dirs = [(c.hydra.run.dir, c.hydra.sweep.dir) for c in (first, second)]
    assert dirs[0][0] != dirs[1][0] and dirs[0][1] != dirs[1][1]
    assert Path(dirs[0][0]).parent == Path(dirs[1][0]).parent  # same run name, different time stamps


def test_slurm_preset_makes_a_valid_sbatch_script(tmp_path, monkeypatch):
    """The preset's keys, mapped to submitit's parameters as the Hydra plugin maps them, give a valid sbatch file."""
    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    fake_srun = tmp_path / "bin" / "srun"  # submitit's Slurm executor insists that srun exists
    fake_srun.parent.mkdir()
    fake_srun.write_text("#!/bin/sh\nexit 1\n")
    fake_srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_srun.parent}:{os.environ['PATH']}")
    assert shutil.which("srun") == str(fake_srun)

    cfg = composed("hydra/launcher=slurm", "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}")
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params["_target_"].endswith("SlurmLauncher")
    executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    skip = {"_target_", "max_num_timeout"}
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items() if k not in skip})
    script = executor._executor._make_submission_file_text("python train.py", "uid")
    for line in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--time=60", "--ntasks-per-node=1"):
        assert f"#SBATCH {line}" in script


def test_ddp_is_refused_in_a_local_multirun_but_not_in_a_run_or_under_slurm(monkeypatch):
    cfg = composed("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    check_ddp_launch(cfg, multirun=False)
    # Lightning would start rank 1 as `python train.py -m <the whole sweep>`
    with pytest.raises(ConfigError, match=r"trainer.strategy='ddp' is not allowed in a local multirun"):
        check_ddp_launch(cfg, multirun=True)
    check_ddp_launch(composed("trainer=cpu"), multirun=True)
    monkeypatch.setenv("SLURM_NTASKS", "2")  # srun starts the ranks
    check_ddp_launch(cfg, multirun=True)
