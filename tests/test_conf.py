"""The configs in conf/ as Hydra composes them: every preset passes the checks (and cnn_best_ema trains as its
comment says), the sweep presets' grids and Optuna settings, cross-validation's folds, the SLURM preset's sbatch
script."""

from __future__ import annotations

import math
import os
import shutil

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from mnist_lit.config.checks import check_config
from mnist_lit.models.base import build_network
from tests.conftest import compose_train, composed, synthetic_overrides, train_in_process


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


@pytest.mark.parametrize("data", ["mnist", "fashion_mnist", "image_folder", "csv"])
def test_cv_kfold_sweeps_every_fold_and_every_data_set_takes_them(data):
    cfg = composed(f"data={data}", "cv=kfold", "cv.folds=4", "cv.fold=3")
    assert (cfg.data.folds, cfg.data.fold) == (4, 3)
    assert cfg.hydra.sweeper.params["cv.fold"] == "range(0,4)"  # -m runs folds 0..3
    assert (composed(f"data={data}").data.folds, composed(f"data={data}").data.fold) == (None, 0)  # cv=null


def test_slurm_preset_makes_a_valid_sbatch_script(tmp_path, monkeypatch):
    """The preset's keys, mapped to submitit's parameters as the Hydra plugin maps them, give a valid sbatch file:
    the one submitit hands to ``sbatch`` (a stand-in here that accepts the job) when it submits."""
    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in (("srun", "exit 1"), ("sbatch", 'echo "Submitted batch job 4242"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")  # submitit's Slurm executor insists that srun exists
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert shutil.which("sbatch") == str(bin_dir / "sbatch")

    cfg = composed("hydra/launcher=slurm", "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}")
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params["_target_"].endswith("SlurmLauncher")
    executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    skip = {"_target_", "max_num_timeout"}
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items() if k not in skip})
    job = executor.submit(print, "a job")
    assert job.job_id == "4242"
    script = job.paths.submission_file.read_text()
    for line in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--time=60", "--ntasks-per-node=1"):
        assert f"#SBATCH {line}" in script


def test_presets_compose_and_pass_the_checks():
    for preset, arch in (("cnn_best", "cnn"), ("cnn_best_ema", "cnn"), ("mlp_best", "mlp")):
        cfg = compose_train(f"experiment={preset}")
        check_config(cfg)
        assert cfg.model.arch == arch and cfg.data.augment == "affine" and cfg.model.name == preset
        assert build_network(cfg.model)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_cnn_best_ema_is_cnn_best_longer_with_ema_and_smoothing_watching_val_acc():
    base, preset = compose_train("experiment=cnn_best"), compose_train("experiment=cnn_best_ema")
    assert preset.callbacks.averaging._target_ == "lightning.pytorch.callbacks.EMAWeightAveraging"
    assert preset.model.label_smoothing == 0.1 and preset.trainer.max_epochs == 2 * base.trainer.max_epochs
    for name in ("model_checkpoint", "early_stopping"):
        assert (preset.callbacks[name].monitor, preset.callbacks[name].mode) == ("val/acc", "max"), name
    assert preset.callbacks.early_stopping.patience >= preset.trainer.max_epochs  # every epoch of the schedule
    for key in ("data", "optimizer", "scheduler"):
        assert preset[key] == base[key], key
    assert preset.model == {**base.model, "label_smoothing": 0.1, "name": "cnn_best_ema"}
    assert preset.run_name == "cnn_best_ema_s42"


def test_cnn_best_ema_keeps_the_epoch_of_highest_validation_accuracy_and_runs_every_epoch(synthetic, tmp_path):
    run_dir = tmp_path / "run"
    metrics = train_in_process(
        run_dir, "experiment=cnn_best_ema", *synthetic_overrides(synthetic), "trainer.max_epochs=4",
        "model.filters=4", "model.dense=16", "data.batch_size=32", "callbacks.averaging.decay=0.5",
    )  # fmt: skip
    accuracies = [epoch["val/acc"] for epoch in metrics["history"]]
    assert metrics["epochs"] == 4 and not metrics["stopped_early"]
    assert metrics["best_epoch"] == accuracies.index(max(accuracies)) + 1
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
    assert best["epoch"] + 1 == metrics["best_epoch"] and "averaging_state" in best


def test_the_cnn_best_sweep_searches_the_new_keys_from_the_preset():
    cfg = compose_train("hparams_search=cnn_best_optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.sampler.seed == 42
    assert sweeper.direction == "maximize" and cfg.optimized_metric == "val/acc" and sweeper.n_trials == 40
    assert cfg.model.name == "cnn_best" and cfg.model.batch_norm is True and cfg.trainer.max_epochs == 15
    assert {"model.convs_per_block", "model.block_dropout", "model.global_pool", "data.augment"} <= set(sweeper.params)
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key, default="missing") != "missing", key  # every searched key exists
    check_config(cfg)
