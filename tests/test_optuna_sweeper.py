"""The project's Optuna sweeper (hydra/sweeper=optuna_study): persistent, resumed and shared studies, and its
refusals. Tiny trials on the synthetic data; the real CLI where the command is the point."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.mnist_lit_optuna_sweeper._sweep import plan_study
from hydra_plugins.mnist_lit_optuna_sweeper.study import open_storage
from mnist_lit.config.checks import PROJECT_ROOT
from mnist_lit.errors import ConfigError
from tests.conftest import (
    ROOT,
    SPACE,
    TINY,
    job_dirs,
    job_metrics,
    job_trials,
    load_study,
    run_cli,
    start_cli,
    summary_rows,
    synthetic_overrides,
)


def sweep_args(synthetic: dict, storage: Path, sweep_dir: Path, *extra: str) -> list[str]:
    """A tiny cnn_optuna_quick study on the synthetic data, in ``storage``, this command's jobs in ``sweep_dir``."""
    return [
        "-m",
        *synthetic_overrides(synthetic),
        "hparams_search=cnn_optuna_quick",
        *SPACE,
        *TINY,
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]


def test_hydra_finds_the_plugin_without_importing_optuna():
    code = (
        "import sys\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.sweeper import Sweeper\n"
        "names = [f'{p.__module__}.{p.__name__}' for p in Plugins.instance().discover(Sweeper)]\n"
        "print(json.dumps([names, 'optuna' in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    names, optuna_imported = json.loads(done.stdout)
    assert "hydra_plugins.mnist_lit_optuna_sweeper.optuna_sweeper.OptunaSweeper" in names, names
    assert not optuna_imported
    assert not (ROOT / "hydra_plugins" / "__init__.py").exists()  # a namespace package, shared with installed plugins


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_search_space_syntax_becomes_optuna_distributions(tmp_path):
    cfg = composed("hparams_search=cnn_optuna", f"hydra.sweeper.storage={tmp_path}/s.journal")
    arguments = ["model.dense=range(64, 257, 64)", "optimizer.lr=tag(log, interval(0.0001, 0.01))", "seed=7"]
    plan = plan_study(cfg, arguments)
    space = plan.distributions
    assert space["model.filters"] == CategoricalDistribution([16, 32, 64])
    assert space["model.dense"] == IntDistribution(64, 256, step=64)
    assert space["optimizer.lr"] == FloatDistribution(0.0001, 0.01, log=True)
    assert "seed=7" in plan.fixed and plan.direction == "maximize" and plan.n_trials == 30
    assert plan.storage == str(tmp_path / "s.journal")
    assert not (tmp_path / "s.journal").exists()  # a check writes nothing
    default = plan_study(composed("hparams_search=cnn_optuna", "paths.log_dir=/x/logs"), []).storage
    assert default == "/x/logs/optuna/cnn_optuna.journal"


def refusal(tmp_path: Path, *overrides: str, arguments: tuple[str, ...] = ()) -> str:
    cfg = composed("hparams_search=cnn_optuna_quick", f"hydra.sweeper.storage={tmp_path}/s.journal", *overrides)
    with pytest.raises(ConfigError) as refused:
        plan_study(cfg, list(arguments))
    return str(refused.value)


def test_settings_that_cannot_work_are_refused_naming_the_key(tmp_path):
    assert refusal(tmp_path, "hydra.sweeper.n_trials=0").startswith("hydra.sweeper.n_trials=0 is not allowed")
    assert "must be an integer >= 1" in refusal(tmp_path, "hydra.sweeper.n_trials=-3")
    assert refusal(tmp_path, "hydra.sweeper.pruner=mean").startswith(
        "hydra.sweeper.pruner=mean is not allowed: choose null (no pruning), median or hyperband"
    )
    assert "MedianPruner has no n_startup" in refusal(
        tmp_path, "hydra.sweeper.pruner=median", "hydra.sweeper.pruner_args={n_startup: 1}"
    )
    message = refusal(tmp_path, "hydra.sweeper.sampler._target_=optuna.samplers.NoSuchSampler")
    assert message.startswith("hydra.sweeper.sampler._target_=optuna.samplers.NoSuchSampler is not an Optuna sampler")
    assert "hydra/sweeper/sampler=tpe|random|grid|nsgaii" in message
    message = refusal(tmp_path, arguments=("model.filtrs=choice(8, 16)",))
    assert message.startswith("model.filtrs=choice(8, 16) is not allowed: model.filtrs is not a key of the config")
    assert "storage=sqlite:////nonexistent-dir/x.db cannot be opened: OperationalError" in refusal(
        tmp_path, "hydra.sweeper.storage=sqlite:////nonexistent-dir/x.db"
    )
    (tmp_path / "file").write_text("")
    assert "cannot be opened" in refusal(tmp_path, f"hydra.sweeper.storage={tmp_path}/file/s.journal")
    assert refusal(tmp_path, "cv=kfold", "hydra.sweeper.pruner=median").startswith(
        "hydra.sweeper.pruner=median is not allowed with cross-validation (cv.fold swept)"
    )


def test_a_study_name_taken_by_another_direction_or_search_space_is_refused(tmp_path):
    storage = open_storage(str(tmp_path / "s.journal"))
    optuna.create_study(study_name="down", storage=storage, direction="minimize")
    message = refusal(tmp_path, "hydra.sweeper.study_name=down")
    assert message.startswith(f"hydra.sweeper.study_name=down already exists in {tmp_path}/s.journal to minimize")
    cfg = composed("hparams_search=cnn_optuna_quick", f"hydra.sweeper.storage={tmp_path}/s.journal")
    optuna.create_study(study_name="cnn_optuna_quick", storage=storage, direction="maximize").set_user_attr(
        "search_space", {}
    )
    with pytest.raises(ConfigError, match="already exists .* with another search space .* model.dense, model.filters"):
        plan_study(cfg, [])


def test_a_refused_sweep_prints_one_error_line_and_writes_nothing(synthetic, tmp_path):
    storage, sweep_dir = tmp_path / "study.journal", tmp_path / "sweep"
    done = run_cli("train.py", *sweep_args(synthetic, storage, sweep_dir, "hydra.sweeper.n_trials=0"), check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: hydra.sweeper.n_trials=0 is not allowed: it must be an integer >= 1"
    ]
    assert list(tmp_path.iterdir()) == []  # no sweep directory, no study file


def start(args: list[str]) -> subprocess.Popen:
    return start_cli("train.py", *args, stderr=subprocess.STDOUT)


def test_an_interrupted_study_is_resumed_by_the_same_command(synthetic, tmp_path):
    storage = tmp_path / "study.journal"
    first, second = tmp_path / "first", tmp_path / "second"
    command = start(sweep_args(synthetic, storage, first, "hydra.sweeper.n_trials=2"))
    lines = []
    for line in command.stdout:  # Ctrl-C once the second trial's job has started
        lines.append(line)
        if line.startswith("[job 1] MNIST:"):
            command.send_signal(signal.SIGINT)
    assert command.wait(timeout=120) != 0, "".join(lines)
    assert [t.state for t in load_study(storage).trials] == [TrialState.COMPLETE, TrialState.FAIL]

    run_cli("train.py", *sweep_args(synthetic, storage, second, "hydra.sweeper.n_trials=2"))
    study = load_study(storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert sorted(job_trials(second)) == [2]  # trial 0 was kept, not run again
    rows = {int(r["trial"]): r for r in summary_rows(second)}  # every trial of the study
    assert sorted(rows) == [0, 1, 2]
    assert rows[0]["status"] == rows[2]["status"] == "ok" and rows[1]["status"] == "failed"
    assert rows[0]["directory"].startswith("../first/0_cnn_") and rows[1]["directory"].startswith("../first/1_cnn_")
    assert float(rows[0]["val/acc"]) == pytest.approx(study.trials[0].value)
    results = yaml.safe_load((second / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(study.best_value)


def test_two_commands_on_one_storage_share_the_study(synthetic, tmp_path):
    storage = tmp_path / "study.journal"
    dirs = [tmp_path / "a", tmp_path / "b"]
    # One asks for two trials at a time and runs them in joblib's worker processes; the other, one at a time.
    launchers = [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], []]
    commands = [
        start(sweep_args(synthetic, storage, d, "hydra.sweeper.n_trials=4", "threads=1", *launcher))
        for d, launcher in zip(dirs, launchers, strict=True)
    ]
    outputs = [c.communicate(timeout=300)[0] for c in commands]
    assert [c.returncode for c in commands] == [0, 0], outputs
    study = load_study(storage)
    complete = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    ran = job_trials(*dirs)  # raises if a trial ran in both commands
    assert len(complete) == 4 and sorted(ran) == complete  # none lost, none run twice
    assert all(len(job_trials(d)) >= 1 for d in dirs)  # both commands took part
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            assert json.loads((ran[trial.number] / "metrics.json").read_text())["val/acc"] == pytest.approx(trial.value)


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
    val_accs = [job_metrics(j)["val/acc"] for j in jobs]
    assert results["best_value"] == pytest.approx(max(val_accs))
    best_overrides = set()
    for job in jobs:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        sampled = dict(o.split("=", 1) for o in overrides)
        assert sampled["model.filters"] in {"2", "4"} and sampled["data.batch_size"] in {"32", "64", "128"}
        assert 1e-4 <= float(sampled["optimizer.lr"]) <= 1e-2
        if job_metrics(job)["val/acc"] == max(val_accs):
            best_overrides.add(tuple(sampled[k] for k in results["best_params"]))
    assert tuple(str(v) for v in results["best_params"].values()) in best_overrides
    assert "Sampler: TPESampler" in done.stdout
    md = (tmp_path / "summary.md").read_text()
    assert f"Optuna's best trial: {results['best_value']:.4f}" in md and "3 jobs: 3 finished, 0 failed" in md


def test_with_folds_each_trial_runs_every_fold_and_its_value_is_their_mean(synthetic, tmp_path):
    storage, sweep_dir = tmp_path / "study.journal", tmp_path / "sweep"
    folds = ("cv=kfold", "cv.folds=2", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2")  # one batch of 4 jobs
    run_cli("train.py", *sweep_args(synthetic, storage, sweep_dir, *folds))
    study = load_study(storage)
    assert "cv.fold" not in study.trials[0].params  # not searched
    by_trial: dict[int, dict[str, float]] = {}
    for job in job_dirs(sweep_dir):
        trial = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["sweeper"]["trial"]
        fold = OmegaConf.load(job / ".hydra" / "config.yaml").cv.fold
        by_trial.setdefault(trial, {})[fold] = job_metrics(job)["val/acc"]
    assert sorted(by_trial) == [0, 1] and all(sorted(f) == [0, 1] for f in by_trial.values())
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        assert trial.value == pytest.approx(sum(by_trial[trial.number].values()) / 2)
    assert len(summary_rows(sweep_dir)) == 4
