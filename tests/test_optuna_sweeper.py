"""The project's Optuna sweeper (hydra/sweeper=optuna_study): persistent, resumed and shared studies, and its
refusals. Tiny trials on the synthetic data; the real CLI where the command is the point."""

from __future__ import annotations

import json
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.mnist_lit_optuna_sweeper._sweep import plan_study
from hydra_plugins.mnist_lit_optuna_sweeper.study import open_storage
from mnist_lit.command import check_overrides
from mnist_lit.config.checks import PROJECT_ROOT
from mnist_lit.errors import ConfigError
from tests.conftest import (
    ROOT,
    SPACE,
    TINY,
    assert_refused,
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
    assert "must be an integer in [1, inf)" in refusal(tmp_path, "hydra.sweeper.n_trials=-3")
    assert refusal(tmp_path, "hydra.sweeper.pruner=mean").startswith(
        "hydra.sweeper.pruner=mean is not allowed: choose null (no pruning), median or hyperband"
    )
    assert "pruner_args.n_startup is not a setting of optuna.pruners.MedianPruner" in refusal(
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


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> DictConfig:
    """cnn_optuna_quick composed once for the refusals below (each changes a copy); its study's folder is empty."""
    log_dir = tmp_path_factory.mktemp("refusals")
    return composed("hparams_search=cnn_optuna_quick", f"paths.log_dir={log_dir}")


def refused_plan(quick: DictConfig, key: str, value: Any) -> str:
    """What plan_study says of ``quick`` with ``key`` set to ``value``."""
    cfg = quick.copy()
    OmegaConf.update(cfg, key, value, force_add=True)
    with pytest.raises(ConfigError) as refused:
        plan_study(cfg, [])
    return str(refused.value)


@pytest.mark.parametrize(
    "key, value, said",
    [
        *(
            (key, value, f"hydra.sweeper.{key}={shown} is not allowed: it must be an integer")
            for key in ("n_trials", "n_jobs", "sampler.seed")
            for value, shown in (("abc", "'abc'"), (1.5, "1.5"), (True, "true"))
        ),
        ("sampler.seed", -1, "sampler.seed=-1 is not allowed: it must be an integer or null in [0, 4294967295]"),
        ("direction", ["maximize", "minimize"], "direction=['maximize', 'minimize'] is not allowed: choose minimize"),
        ("max_failure_rate", 1.5, "max_failure_rate=1.5 is not allowed: it must be a number in [0, 1]"),
        ("sampler._target_", "optuna.Study", "_target_=optuna.Study is not an Optuna sampler: choose one with"),
        ("sampler.bogus", 1, "sampler.bogus is not a setting of optuna.samplers.TPESampler: choose from"),
    ],
)
def test_sweeper_settings_are_checked_against_their_declared_types(quick, key, value, said):
    message = refused_plan(quick, f"hydra.sweeper.{key}", value)
    assert message.startswith("hydra.sweeper.") and said in message


@pytest.mark.parametrize("name", ["../../escape", "a/b", "/abs", "", "..", "x" * 129, "back\\slash"])
def test_a_study_name_must_be_one_plain_file_name(quick, name):
    message = refused_plan(quick, "hydra.sweeper.study_name", name)
    assert message.startswith(f"hydra.sweeper.study_name={name!r} is not allowed: it names the study's journal file")


def test_a_non_ascii_study_name_names_its_journal(quick):
    cfg = quick.copy()
    OmegaConf.update(cfg, "hydra.sweeper.study_name", "études")  # as Hydra reads 'études'
    assert plan_study(cfg, []).storage == f"{quick.paths.log_dir}/optuna/études.journal"


@pytest.mark.parametrize(
    "arguments, said",
    [
        (["model.dense=choice()"], "model.dense=choice() cannot be read: empty choice is not legal"),
        (["optimizer.lr=interval(0.5)"], "interval(0.5) cannot be read: missing a required argument: 'end'"),
        (["optimizer.lr=interval(a, b)"], "interval(a, b) cannot be read: mismatch type argument start: str is"),
        (["optimizer.lr=interval(0.01, 0.001)"], "(`low <= high` must hold, but got (low=0.01, high=0.001))"),
        (["optimizer.lr=tag(log, interval(0, 1))"], "(`low > 0` must hold for `log=True`, but got (low=0.0, high"),
        (["model.dense=range(1, 9, 0)"], "model.dense=range(1, 9, 0) is not allowed in an Optuna search (its step"),
        (["model.dense=range(9, 1)"], "(the range holds no value): give choice(a, b, ...), range(start, stop[, st"),
        (["optimizer.lr=tag(foo, interval(0.001, 0.01))"], "(tag foo is not one it reads: only log, of an interval)"),
        (["model=glob(*)"], "model=glob(*) is not allowed in an Optuna search (list a group's options with"),
        (
            ["hydra/sweeper/sampler=grid", "~hydra.sweeper.sampler.n_startup_trials", "optimizer.lr=interval(1, 2)"],
            "optimizer.lr searched over the interval 1.0 to 2.0 is not allowed with hydra/sweeper/sampler=grid",
        ),
    ],
)
def test_a_malformed_search_space_expression_is_refused(quick, capsys, arguments, said):
    *choices, expression = arguments
    with pytest.raises((SystemExit, ConfigError)) as refused:
        check_overrides(arguments)  # Hydra's grammar, as the command line is read
        plan_study(composed("hparams_search=cnn_optuna_quick", *choices) if choices else quick, [expression])
    assert said in (capsys.readouterr().err if refused.type is SystemExit else str(refused.value))


@pytest.mark.parametrize(
    "text, said",
    [
        (b"my own notes\n", "its line 1 is not an entry of an Optuna journal"),
        (b'{"op_code": 0, "study_name": "a", "directions": [1]}\n{"op_code": 4, "study_id"', "its line 2 is cut short"),
        (b'{"op_code": 0}\n{"a": 1}\n', "its line 2 is not an entry of an Optuna journal"),
        (b"\xff\xfe\n", "its line 1 is not an entry"),
    ],
)
def test_a_journal_that_is_not_whole_is_refused_and_left_as_it_is(quick, tmp_path, text, said):
    journal = tmp_path / "optuna" / "cnn_optuna_quick.journal"  # the study's default journal
    journal.parent.mkdir()
    journal.write_bytes(text)
    cfg = quick.copy()
    OmegaConf.update(cfg, "paths.log_dir", str(tmp_path))
    for create in (False, True):  # the check before the sweep, and the sweep's own opening
        with pytest.raises(ConfigError) as refused:
            plan_study(cfg, [], create=create)
        assert str(refused.value).startswith(f"hydra.sweeper.storage={journal} is not an Optuna journal file")
        assert said in str(refused.value)
    assert journal.read_bytes() == text and sorted(p.name for p in journal.parent.iterdir()) == [journal.name]


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


@pytest.mark.parametrize(
    "override, line",
    [
        ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0 is not allowed: it must be an integer in [1, inf)"),
        ("model.dense=choice()", "model.dense=choice() cannot be read: empty choice is not legal (https://hydra.cc/"),
    ],
)
def test_a_refused_sweep_prints_one_error_line_and_writes_nothing(synthetic, tmp_path, override, line):
    storage, sweep_dir = tmp_path / "study.journal", tmp_path / "sweep"
    done = run_cli("train.py", *sweep_args(synthetic, storage, sweep_dir, override), check=False)
    assert done.returncode == 2, done.stderr
    (error,) = done.stderr.strip().splitlines()
    assert error.startswith(f"Error: {line}")
    assert list(tmp_path.iterdir()) == []  # no sweep directory, no study file


def refused_sweep(synthetic: dict, tmp_path: Path, *overrides: str) -> str:
    """The one ``Error:`` line of the real CLI refusing a sweep with ``overrides``, which left nothing behind."""
    done = run_cli(
        "train.py", *sweep_args(synthetic, tmp_path / "s.journal", tmp_path / "sweep", *overrides), check=False
    )
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert list(tmp_path.iterdir()) == []
    return done.stderr.removeprefix("Error: ").strip()


@pytest.mark.parametrize(
    "override, said",
    [
        ("model.filters=choice(a, b)", "model.filters=a, which is refused: model.filters='a' is not allowed: it must"),
        ("model.filters=choice([32],[64])", "model.filters=[32], which is refused: model.filters=[32] is not allowed"),
        ("model.dropout=interval(2, 3)", "model.dropout=2.0, which is refused: model.dropout=2.0 is not allowed"),
        ("data.batch_size=choice(32, -1)", "data.batch_size=-1, which is refused: data.batch_size=-1 is not allowed"),
        ("model.kernel_size=choice(9)", "model.kernel_size=9, which is refused: model.kernel_size=9 with model.b"),
        ("+model.bogus=choice(1, 2)", "+model.bogus=1, which is refused: model.bogus is not a setting of model"),
        ("model=choice(cnn, nosuch)", "model=nosuch, which is refused: model=nosuch is not allowed: choose from cnn,"),
    ],
)
def test_each_value_of_the_search_space_is_checked_before_the_first_trial(synthetic, tmp_path, override, said):
    # the preset's space left out (sweep_args' own stays), for fewer configs to check; the refused value is named
    message = refused_sweep(synthetic, tmp_path, "hydra.sweeper.params=null", "model.blocks=3", override)
    assert message.startswith("the search space gives a job ") and said in message


def test_a_sweep_whose_every_trial_failed_exits_saying_so(synthetic, tmp_path):
    storage, sweep_dir = tmp_path / "study.journal", tmp_path / "sweep"
    args = sweep_args(synthetic, storage, sweep_dir, "hydra.sweeper.n_trials=1", "optimized_metric=val/bogus")
    done = run_cli("train.py", *args, check=False)
    assert done.returncode == 2 and done.stderr.splitlines()[-1] == (
        "Error: every job of this sweep failed, 1 of 1 (trial 0: the job returned None, not a finite number): see "
        f"{sweep_dir / 'summary.md'}"
    )
    assert [t.state for t in load_study(storage).trials] == [TrialState.FAIL]
    assert [r["status"] for r in summary_rows(sweep_dir)] == ["failed"]  # the study's, though the job ended


def test_a_job_refused_for_its_own_values_is_one_line_the_others_run_and_the_sweep_ends_with_status_2(
    synthetic, tmp_path
):
    # kernel 9 with 3 blocks is refused; the space's ends (kernel 3 with 3 blocks, kernel 9 with 1) are not
    storage, sweep_dir = tmp_path / "study.journal", tmp_path / "sweep"
    grid = ["hydra/sweeper/sampler=grid", "~hydra.sweeper.sampler.n_startup_trials", "hydra.sweeper.params=null"]
    space = ["model.kernel_size=choice(3, 9)", "model.blocks=choice(3, 1)", "model.filters=2", "model.dense=8"]
    args = ["-m", *synthetic_overrides(synthetic), "hparams_search=cnn_optuna_quick", *grid, *space, *TINY,
            f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    done = run_cli("train.py", *args, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(errors) == 2, done.stderr
    assert re.match(r"Error: job \d \(model.kernel_size=9 model.blocks=3 ", errors[0]), errors[0]  # the grid's order
    assert "): model.kernel_size=9 with model.blocks=3" in errors[0]
    assert errors[1] == f"Error: 1 of the sweep's 4 jobs failed: {sweep_dir / 'summary.md'} lists each error"
    assert sorted(t.state.name for t in load_study(storage).trials) == ["COMPLETE"] * 3 + ["FAIL"]  # the whole grid


def test_a_full_disk_under_the_journal_ends_in_one_line(synthetic, tmp_path):
    storage = tmp_path / "study.journal"
    other = optuna.create_study(study_name="other", storage=open_storage(str(storage)))
    other.add_trials([optuna.trial.create_trial(value=0.5)] * 50)
    size = storage.stat().st_size

    def limited() -> None:  # the journal's next line goes past the file size limit
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, size + 10))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *sweep_args(synthetic, storage, tmp_path / "sweep")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=limited,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"Error: could not write {storage}: File too large (disk full or file size limit). Free some space and run "
        "the same command again: it resumes the study"
    ], done.stderr


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


@pytest.mark.parametrize("folds", [0, 1])
def test_too_few_folds_end_in_the_grid_sweeps_one_line(synthetic, tmp_path, folds):
    base = ("-m", *synthetic_overrides(synthetic), "cv=kfold", f"cv.folds={folds}", f"hydra.sweep.dir={tmp_path / 's'}")
    optuna_search = ("hparams_search=cnn_optuna_quick", f"hydra.sweeper.storage={tmp_path / 'study.journal'}")
    lines = []
    for search in ((), optuna_search):  # the basic sweeper's grid, then the Optuna study
        done = run_cli("train.py", *base, *search, check=False)
        assert_refused(done, f"cv.folds={folds} (data.folds) is not allowed: k-fold cross-validation needs an integer")
        lines.append([line for line in done.stderr.splitlines() if line.startswith("Error: ")])
    assert lines[0] == lines[1]
    assert list(tmp_path.iterdir()) == []
