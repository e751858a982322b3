"""The run directory, checked and claimed before anything is written: taken, locked, raced for, too long, unwritable,
or holding an earlier sweep; a refused command leaves every file as it was."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mnist_lit.errors import ConfigError
from mnist_lit.io.run_dir import LOCK_FILE, check_sweep_dir, claimed_job_dir, resolve_last
from tests.conftest import (
    LONG_NAME,
    ROOT,
    assert_refused,
    compose_train,
    figures,
    make_job,
    run_cli,
    snapshot,
    start_cli,
    synthetic_overrides,
)


def test_refused_resumes_and_taken_run_dirs_leave_the_run_byte_identical(synthetic, plain_run_copy, tmp_path):
    last = plain_run_copy / "checkpoints" / "last.ckpt"
    before = snapshot(plain_run_copy)
    cases = [
        (["model=cnn", f"ckpt_path={last}"], "holds a model.arch='mlp' checkpoint, but model.arch='cnn'"),
        (["model.hidden=64", f"ckpt_path={last}", "trainer.max_epochs=3"],
         "cannot be resumed with model.hidden=64: it was trained with model.hidden=128"),
        ([f"ckpt_path={last}", "trainer.max_epochs=1"], "already holds 1 completed epochs and trainer.max_epochs=1"),
        (["scheduler=onecycle", f"ckpt_path={last}", "trainer.max_epochs=3"], "with scheduler: it was trained without"),
        ([f"hydra.run.dir={plain_run_copy}"], f"hydra.run.dir={plain_run_copy} already holds another run"),
        # resuming run A into run B's directory: B is not the run being resumed
        ([f"hydra.run.dir={plain_run_copy}", f"ckpt_path={tmp_path / 'other' / 'checkpoints' / 'last.ckpt'}"],
         "already holds another run"),
    ]  # fmt: skip
    (tmp_path / "other" / "checkpoints").mkdir(parents=True)
    shutil.copy(last, tmp_path / "other" / "checkpoints" / "last.ckpt")
    for args, expected in cases:
        assert_refused(run_cli("train.py", *synthetic_overrides(synthetic), *args, check=False), expected)
        assert snapshot(plain_run_copy) == before, args
    # the run is still whole: evaluate accepts it
    run_cli("evaluate.py", f"run_dir={plain_run_copy}", f"report_dir={tmp_path / 'report'}", "tensorboard=false")


def test_two_processes_racing_for_one_new_run_dir_one_wins(synthetic, tmp_path):
    run_dir = tmp_path / "race"
    args = [*synthetic_overrides(synthetic), f"hydra.run.dir={run_dir}", "trainer.max_epochs=1"]
    procs = [start_cli("train.py", *args) for _ in range(2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    (err,) = [err for code, err in results if code == 2]
    assert "Error: hydra.run.dir=" in err and ("is in use" in err or "already holds another run" in err), err
    assert "Traceback" not in err
    writers = {p.name.split(".")[-2] for p in run_dir.glob("events.out.tfevents.*")}
    assert len(writers) == 1  # one process wrote the events
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 1


def test_held_lock_refuses_a_second_command_at_once(synthetic, tmp_path):
    """The lock itself, without timing luck: a directory locked by another process is refused."""
    run_dir = tmp_path / "locked"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from mnist_lit.io.run_dir import "
         "lock_directory; lock = lock_directory(Path(sys.argv[1]), 'x'); print('held', flush=True); time.sleep(60)",
         str(run_dir)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={run_dir}", check=False)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # not left to the collector, which would warn inside a later test's command
    assert_refused(done, f"hydra.run.dir={run_dir} is in use: another command is writing into it")
    assert [p.name for p in run_dir.iterdir()] == [LOCK_FILE]  # the holder's lock file, nothing of the refused run


def test_sweep_dir_holding_an_earlier_sweep_is_refused(synthetic, tmp_path):
    make_job(tmp_path, 0, ["model.filters=8"], metrics=figures(0.9, 0.9, 100))
    with pytest.raises(ConfigError, match=f"hydra.sweep.dir={tmp_path} already holds an earlier sweep"):
        check_sweep_dir(tmp_path, str(tmp_path))
    before = snapshot(tmp_path)
    done = run_cli("train.py", "-m", *synthetic_overrides(synthetic), f"hydra.sweep.dir={tmp_path}",
                   "trainer.max_epochs=1", check=False)  # fmt: skip
    assert_refused(done, f"hydra.sweep.dir={tmp_path} already holds an earlier sweep (0_job)")
    assert snapshot(tmp_path) == before


@pytest.fixture
def earlier_run(tmp_path: Path) -> Path:
    """A run directory as train.py leaves it (its files' contents do not matter to the guard)."""
    run = tmp_path / "earlier"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (run / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    (run / "metrics.json").write_text("{}\n")
    return run


GUARD_CASES = {
    "good settings": [],
    "wrong type into another run": ["trainer.max_epochs=abc"],
    "library refuses": ["trainer.devices=0"],
}


@pytest.mark.parametrize("overrides", GUARD_CASES.values(), ids=GUARD_CASES.keys())
def test_refused_run_leaves_another_run_as_it_was(synthetic, earlier_run, overrides) -> None:
    """The directory is refused before the config is read, whatever else the config holds."""
    before = snapshot(earlier_run)
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={earlier_run}", *overrides, check=False)
    assert_refused(done, f"hydra.run.dir={earlier_run} already holds another run")
    assert snapshot(earlier_run) == before


REFUSED_CASES = {
    "unset environment variable": (["run_name=${oc.env:MNIST_LIT_UNSET_VARIABLE}"], "run_name"),
    "wrong type": (["trainer.max_epochs=abc"], "trainer.max_epochs"),
    "library refuses": (["trainer.devices=0"], "trainer"),
    "optimizer refuses": (["+optimizer.eps=-1.0"], "optimizer cannot be built"),
}


@pytest.mark.parametrize("overrides,expected", REFUSED_CASES.values(), ids=REFUSED_CASES.keys())
def test_refused_new_run_leaves_no_folder(synthetic, tmp_path, overrides, expected) -> None:
    """A run refused by its checks removes the folders its guard made (paths.log_dir and those below)."""
    done = run_cli(
        "train.py", *synthetic_overrides(synthetic), f"paths.log_dir={tmp_path}/logs", *overrides, check=False
    )
    assert_refused(done, expected)
    assert list(tmp_path.iterdir()) == []


def test_too_long_run_directory_name_is_refused(synthetic, tmp_path) -> None:
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path / LONG_NAME}", check=False)
    assert_refused(done, "more than the 255 a name can have")
    assert list(tmp_path.iterdir()) == []


SWEEP_CASES = {
    "one folder for every job": ("hydra.sweep.subdir=${run_name}", "the same folder"),
    "a folder outside the sweep": ("hydra.sweep.subdir=../../earlier", "outside hydra.sweep.dir"),
}


@pytest.mark.parametrize("subdir,expected", SWEEP_CASES.values(), ids=SWEEP_CASES.keys())
def test_sweep_job_folders_are_checked_before_any_job(synthetic, tmp_path, earlier_run, subdir, expected) -> None:
    before = snapshot(earlier_run)
    sweep = tmp_path / "sweeps" / "s"
    done = run_cli(
        "train.py", "-m", *synthetic_overrides(synthetic), f"hydra.sweep.dir={sweep}", subdir, "seed=1,2",
        check=False,
    )  # fmt: skip
    assert_refused(done, expected)
    assert not sweep.exists()
    assert snapshot(earlier_run) == before


def test_unwritable_log_directory_fails_before_training(synthetic, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log directory should go")
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={blocker}/run", check=False)
    assert done.returncode == 2
    assert f"hydra.run.dir={blocker}/run cannot be used" in done.stderr and "is a file" in done.stderr
    assert "Traceback" not in done.stderr and "Epoch" not in done.stdout


def test_a_sweep_whose_shared_settings_are_refused_makes_no_sweep_directory(synthetic, tmp_path) -> None:
    """The settings every job shares are checked once, before the sweep directory is made (each job then checks
    its own)."""
    sweep = tmp_path / "sweeps" / "s"
    done = run_cli("train.py", "-m", *synthetic_overrides(synthetic), f"hydra.sweep.dir={sweep}", "optimizer.lr=-1",
                   "seed=1,2", check=False)  # fmt: skip
    assert_refused(done, "optimizer.lr=-1 is not allowed")
    assert not (tmp_path / "sweeps").exists()


def test_each_fold_is_a_run_of_its_own_for_ckpt_path_last_and_a_job_of_its_own_for_a_sweep(tmp_path):
    def fold(k: int, *overrides: str):
        return compose_train("cv=kfold", f"cv.fold={k}", f"paths.log_dir={tmp_path}", *overrides)

    runs = tmp_path / "runs" / "mlp_h128_s42"
    for k, name in ((0, "older"), (1, "newer")):  # a run of each fold, as training leaves it
        (runs / name / ".hydra").mkdir(parents=True)
        cfg = fold(k)
        saved = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        (runs / name / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(saved))
        (runs / name / "checkpoints").mkdir()
        (runs / name / "checkpoints" / "last.ckpt").write_bytes(b"")
        (runs / name / "metrics.json").write_text("{}")
    os.utime(runs / "older" / "checkpoints" / "last.ckpt", (0, 0))
    for k, name in ((0, "older"), (1, "newer")):
        cfg = fold(k, "ckpt_path=last")
        resolve_last(cfg)
        assert cfg.ckpt_path == str(runs / name / "checkpoints" / "last.ckpt")
    for other in (fold(2, "ckpt_path=last"), fold(0, "cv.folds=4", "ckpt_path=last")):
        with pytest.raises(ConfigError, match="ckpt_path=last found no run to resume"):
            resolve_last(other)
    # The same multirun again: a job's folder is its own only for its own fold.
    with claimed_job_dir(runs / "newer", tmp_path, fold(1)) as own:
        assert own
    with (
        pytest.raises(ConfigError, match="already holds another job's outputs"),
        claimed_job_dir(runs / "newer", tmp_path, fold(0)),
    ):
        pass
