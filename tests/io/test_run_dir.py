"""Nothing is lost: refused commands write nothing, outputs are replaced whole, a full disk keeps the previous file."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image

from mnist_lit.config.checks import check_config, command_config
from mnist_lit.data.acquire import ensure_dataset
from mnist_lit.data.mnist import DATASET as MNIST
from mnist_lit.errors import ConfigError, OutputError
from mnist_lit.evaluation.evaluate import evaluate
from mnist_lit.evaluation.report import check_report_dir
from mnist_lit.io import atomic as files
from mnist_lit.io.checkpoint_io import AtomicCheckpointIO
from mnist_lit.io.run_dir import LOCK_FILE, check_sweep_dir
from mnist_lit.predict import predict_images
from mnist_lit.sweeps.summary import read_sweep
from tests.conftest import (
    ROOT,
    assert_refused,
    compose_train,
    figures,
    make_job,
    run_cli,
    snapshot,
    synthetic_overrides,
    write_synthetic_mnist,
)


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory) -> Path:
    """A one-epoch MLP run on the synthetic data (copied by the tests that change it)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={run_dir}", "trainer.max_epochs=1")
    return run_dir


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(trained, target)
    return target


# Refused commands leave every file as it was.


def test_refused_resumes_and_taken_run_dirs_leave_the_run_byte_identical(synthetic, run_copy, tmp_path):
    last = run_copy / "checkpoints" / "last.ckpt"
    before = snapshot(run_copy)
    cases = [
        (["model=cnn", f"ckpt_path={last}"], "holds a model.arch='mlp' checkpoint, but model.arch='cnn'"),
        (["model.hidden=64", f"ckpt_path={last}", "trainer.max_epochs=3"],
         "model.hidden=64 but the checkpoint has 128"),
        ([f"ckpt_path={last}", "trainer.max_epochs=1"], "already holds 1 completed epochs and trainer.max_epochs=1"),
        (["scheduler=onecycle", f"ckpt_path={last}", "trainer.max_epochs=3"], "trained without a learning-rate"),
        ([f"hydra.run.dir={run_copy}"], f"hydra.run.dir={run_copy} already holds another run"),
        # resuming run A into run B's directory: B is not the run being resumed
        ([f"hydra.run.dir={run_copy}", f"ckpt_path={tmp_path / 'other' / 'checkpoints' / 'last.ckpt'}"],
         "already holds another run"),
    ]  # fmt: skip
    (tmp_path / "other" / "checkpoints").mkdir(parents=True)
    shutil.copy(last, tmp_path / "other" / "checkpoints" / "last.ckpt")
    for args, expected in cases:
        assert_refused(run_cli("train.py", *synthetic_overrides(synthetic), *args, check=False), expected)
        assert snapshot(run_copy) == before, args
    # the run is still whole: evaluate accepts it
    run_cli("evaluate.py", f"run_dir={run_copy}", f"report_dir={tmp_path / 'report'}", "tensorboard=false")


def test_two_processes_racing_for_one_new_run_dir_one_wins(synthetic, tmp_path):
    run_dir = tmp_path / "race"
    command = [sys.executable, str(ROOT / "train.py"), *synthetic_overrides(synthetic), f"hydra.run.dir={run_dir}",
               "trainer.max_epochs=1"]  # fmt: skip
    procs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
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
    assert_refused(done, f"hydra.run.dir={run_dir} is in use: another command is writing into it")
    assert [p.name for p in run_dir.iterdir()] == [LOCK_FILE]  # the holder's lock file, nothing of the refused run


def test_evaluate_refuses_report_dir_that_is_the_run_and_keeps_it(run_copy, tmp_path):
    before = snapshot(run_copy)
    done = run_cli("evaluate.py", f"run_dir={run_copy}", f"report_dir={run_copy}", check=False)
    assert_refused(done, f"report_dir={run_copy} is not allowed: that folder holds files that are not an earlier")
    assert snapshot(run_copy) == before


def test_report_dir_refusals(trained, tmp_path):
    (tmp_path / "a-file").write_text("mine")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    report = tmp_path / "earlier"
    evaluate(command_config("eval", run_dir=str(trained), report_dir=str(report), tensorboard=False))
    (report / "notes.txt").write_text("added by hand")  # no longer only a report: refused from now on
    cases = [
        ("a-file", "is not allowed: it is a file"),
        ("mine", "holds files that are not an earlier report"),
        ("earlier", "holds files that are not an earlier report"),
        ("a-file/report", "cannot be written: " + str(tmp_path / "a-file") + " is a file"),
    ]
    for name, expected in cases:
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
            check_report_dir(tmp_path / name, str(tmp_path / name))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "a-file").read_text() == "mine"


def test_earlier_report_is_replaced_whole(trained, tmp_path):
    report = tmp_path / "report"
    cfg = command_config("eval", run_dir=str(trained), report_dir=str(report), tensorboard=False)
    evaluate(cfg)
    first = snapshot(report)
    evaluate(command_config("eval", run_dir=str(trained), report_dir=str(report), tensorboard=False, split="val"))
    assert snapshot(report).keys() == first.keys() and snapshot(report) != first
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary or old folder left


def test_corrupt_run_files_are_reported_not_raised(run_copy):
    (run_copy / "metrics.json").write_text("{not json")
    with pytest.raises(ConfigError, match="its metrics.json cannot be read"):
        evaluate(command_config("eval", run_dir=str(run_copy), tensorboard=False))
    (run_copy / ".hydra" / "config.yaml").write_text("model: [unclosed")
    done = run_cli("evaluate.py", f"run_dir={run_copy}", check=False)
    assert_refused(done, f"run_dir='{run_copy}' is not allowed: {run_copy / '.hydra' / 'config.yaml'} cannot be read")
    assert not (run_copy / "report").exists()


# Bad values: an Error line naming the key, and nothing written.


def train_config(synthetic, *overrides: str) -> DictConfig:
    """train.py's config with ``overrides``, reading the synthetic data."""
    cfg = compose_train(f"data.data_dir={synthetic['data_dir']}", *overrides)
    cfg.data.checksums = synthetic["checksums"]
    return cfg


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data.val_fraction=0.0001", "data.val_fraction=0.0001 leaves the validation split empty (500 images"),
        ("data.val_fraction=0.9999", "data.val_fraction=0.9999 leaves the training split empty"),
        ("trainer.limit_train_batches=0", "trainer.limit_train_batches=0 is not allowed: give a fraction"),
        ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches=1.5 is not allowed"),
        ("trainer.limit_train_batches=-3", "trainer.limit_train_batches=-3 is not allowed"),
        ("trainer.limit_val_batches=0.001", "trainer.limit_val_batches=0.001 leaves no batch: the epoch has 1 batches"),
        ("trainer.limit_train_batches=0.01", "trainer.limit_train_batches=0.01 leaves no batch"),
        ("optimizer.lr=inf", "optimizer.lr=inf is not allowed"),
        ("trainer.precision=bogus", "trainer.precision='bogus' is not allowed: choose auto or one of 32-true"),
        ("trainer.accelerator=abacus", "trainer.accelerator='abacus' is not allowed"),
        ("run_name=a/b", "run_name='a/b' is not allowed: it names one folder"),
        ("run_name=..", "run_name='..' is not allowed"),
        ("data.split_seed=-1", "data.split_seed=-1 is not allowed"),
    ],
)
def test_config_extremes_are_refused(synthetic, override, expected):
    with pytest.raises(ConfigError) as info:
        check_config(train_config(synthetic, override))
    assert expected in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU is there")
def test_gpu_accelerator_without_a_gpu_is_refused(synthetic):
    with pytest.raises(ConfigError, match="trainer.accelerator=gpu is not allowed: this machine has no GPU"):
        check_config(train_config(synthetic, "trainer.accelerator=gpu"))


def test_bad_values_write_nothing_through_the_cli(synthetic, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    logs = tmp_path / "logs"
    for args, expected in [
        (["data.val_fraction=0.0001"], "data.val_fraction=0.0001 leaves the validation split empty"),
        ([f"data.data_dir={blocker}"], f"data.data_dir={blocker} cannot be used: {blocker} is a file"),
        ([f"ckpt_path={tmp_path}"], f"ckpt_path='{tmp_path}' is not allowed: it is a folder"),
    ]:
        done = run_cli("train.py", *synthetic_overrides(synthetic), f"paths.log_dir={logs}", *args, check=False)
        assert_refused(done, expected)
    assert not logs.exists() and blocker.read_text() == "mine"


# The data folder.


def read_only(directory: Path) -> None:
    """Make ``directory`` read-only for this process: chmod, or (as root, who ignores modes) a read-only tmpfs."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return
    content = directory.with_name(directory.name + ".content")
    shutil.copytree(directory, content)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(directory)]).returncode != 0:
        pytest.skip("running as root, and mount is not allowed here: no way to make a read-only folder")
    shutil.copytree(content, directory, dirs_exist_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)


@pytest.fixture
def unmount():
    mounts: list[Path] = []
    yield mounts
    for path in mounts:
        subprocess.run(["umount", str(path)], check=False)
        if path.exists():
            path.chmod(0o755)


def test_verified_copy_in_a_read_only_folder_is_used_as_it_is(tmp_path, unmount):
    data = tmp_path / "data"
    checksums = write_synthetic_mnist(data)
    unmount.append(data)
    read_only(data)
    before = snapshot(data)
    assert ensure_dataset(data, MNIST, mirrors=["http://127.0.0.1:9/"], checksums=checksums) == "present"
    assert snapshot(data) == before and not (MNIST.raw_dir(data) / ".lock").exists()


def test_read_only_folder_without_the_files_is_refused_by_name(tmp_path, unmount):
    data = tmp_path / "data"
    data.mkdir()
    unmount.append(data)
    read_only(data)
    with pytest.raises(ConfigError, match=f"data.data_dir={data} cannot be used: .*not writable"):
        ensure_dataset(data, MNIST, mirrors=["http://127.0.0.1:9/"])


# Atomic writes: a failing write keeps the previous file.


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    files.write_text(target, "good\n")

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(OutputError, match=f"could not write {target}: No space left on device.*previous metrics.json"):
        files.write_text(target, "new\n" * 1000)
    assert target.read_text() == "good\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # the temporary file is gone


def test_checkpoint_interrupted_mid_write_keeps_the_previous_one(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(1000)}, path)
    good = path.read_bytes()

    def half_then_full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(OutputError):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, path)
    assert path.read_bytes() == good and torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_full_tmpfs_keeps_the_previous_checkpoint(tmp_path, unmount):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]).returncode:
        pytest.skip("needs root and mount to make a small filesystem")
    unmount.append(disk)
    io = AtomicCheckpointIO()
    path = disk / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(100_000)}, path)  # 400 kB of the 1 MiB
    with pytest.raises(OutputError, match="No space left on device"):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(200_000)}, path)  # 800 kB more do not fit beside it
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in disk.iterdir()] == ["last.ckpt"]


def test_training_that_cannot_write_its_checkpoint_keeps_the_last_good_one(synthetic, run_copy):
    """End to end: a file-size limit (as a full disk would) stops the resumed run; last.ckpt stays loadable."""
    last = run_copy / "checkpoints" / "last.ckpt"
    good = last.read_bytes()
    limit = len(good) // 2  # the config and event files fit; no checkpoint does

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *synthetic_overrides(synthetic), f"ckpt_path={last}",
         "trainer.max_epochs=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=limited,
    )  # fmt: skip
    assert_refused(done, "could not write ")
    assert "previous" in done.stderr and "Free some space" in done.stderr
    assert last.read_bytes() == good and torch.load(last, weights_only=True)["epoch"] == 0
    assert not [p for p in (run_copy / "checkpoints").iterdir() if p.name.endswith(".tmp")]


# Prediction: people's own files and output paths.


@pytest.mark.parametrize("size", [(1, 1), (40, 60)], ids=["1x1", "uniform"])
def test_image_without_a_digit_is_refused(trained, tmp_path, size):
    Image.new("L", size, 200).save(tmp_path / "blank.png")
    cfg = command_config("predict", ckpt_path=str(trained / "checkpoints" / "best.ckpt"), images=str(tmp_path))
    with pytest.raises(ConfigError, match=f"images: '{tmp_path / 'blank.png'}' is not allowed: it holds no digit"):
        predict_images(cfg)


def test_unusual_image_modes_read_like_grayscale(tmp_path):
    from mnist_lit.predict import load_image, prepare

    digit = np.zeros((60, 40), dtype=np.uint8)
    digit[8:52, 16:24] = 255
    expected = prepare(Image.fromarray(digit))
    Image.fromarray(digit.astype(np.float32) / 255.0, "F").save(tmp_path / "float.tif")  # 0..1 floats
    Image.fromarray(digit).convert("1").save(tmp_path / "bilevel.png")
    Image.fromarray(255 - digit).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    Image.fromarray(digit).convert("P").save(tmp_path / "palette.gif")
    for name in ("float.tif", "bilevel.png", "palette.gif"):
        assert torch.equal(prepare(load_image(tmp_path / name)), expected), name
    cmyk = prepare(load_image(tmp_path / "cmyk.jpg")).float()  # JPEG: close, not exact
    assert (cmyk - expected.float()).abs().mean() < 8


def test_prediction_output_that_is_not_ours_is_refused(trained, tmp_path):
    Image.fromarray(np.pad(np.full((40, 8), 255, np.uint8), 10)).save(tmp_path / "one.png")
    (tmp_path / "user.csv").write_text("name,value\nmine,1\n")
    (tmp_path / "a-file").write_text("mine")
    ckpt = str(trained / "checkpoints" / "best.ckpt")
    cases = [
        (tmp_path, "is not allowed: it is a folder"),
        (tmp_path / "user.csv", "is not allowed: that file exists and is not a predictions CSV"),
        (tmp_path / "a-file" / "out.csv", "cannot be written: " + str(tmp_path / "a-file") + " is a file"),
    ]
    for output, expected in cases:
        cfg = command_config("predict", ckpt_path=ckpt, images=str(tmp_path / "one.png"), output=str(output))
        with pytest.raises(ConfigError, match=f"output='{output}' {expected}"):
            predict_images(cfg)
    assert (tmp_path / "user.csv").read_text() == "name,value\nmine,1\n"
    # an earlier predictions CSV is replaced
    out = tmp_path / "predictions.csv"
    cfg = command_config("predict", ckpt_path=ckpt, images=str(tmp_path / "one.png"), output=str(out))
    predict_images(cfg)
    predict_images(cfg)
    assert out.read_text().startswith("image,digit,confidence,uncertain") and len(out.read_text().splitlines()) == 2


# Sweeps.


def test_unreadable_job_files_are_listed_as_failed_jobs(tmp_path):
    make_job(tmp_path, 0, ["model.filters=8"], metrics=figures(0.9, 0.9, 100))
    (make_job(tmp_path, 1, ["model.filters=16"]) / "metrics.json").write_text("{half")
    (make_job(tmp_path, 2, ["model.filters=32"]) / ".hydra" / "overrides.yaml").write_text("[unclosed")
    jobs = {job.num: job for job in read_sweep(tmp_path)}
    assert jobs[0].status == "ok"
    assert jobs[1].status == "failed" and jobs[1].error.startswith("metrics.json cannot be read")
    assert jobs[2].status == "failed" and jobs[2].error.startswith("overrides.yaml cannot be read")


def test_sweep_dir_holding_an_earlier_sweep_is_refused(synthetic, tmp_path):
    make_job(tmp_path, 0, ["model.filters=8"], metrics=figures(0.9, 0.9, 100))
    with pytest.raises(ConfigError, match=f"hydra.sweep.dir={tmp_path} already holds an earlier sweep"):
        check_sweep_dir(tmp_path, str(tmp_path))
    before = snapshot(tmp_path)
    done = run_cli("train.py", "-m", *synthetic_overrides(synthetic), f"hydra.sweep.dir={tmp_path}",
                   "trainer.max_epochs=1", check=False)  # fmt: skip
    assert_refused(done, f"hydra.sweep.dir={tmp_path} already holds an earlier sweep (0_job)")
    assert snapshot(tmp_path) == before
