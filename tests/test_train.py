"""``python train.py`` end to end: outputs, logs, resuming (``ckpt_path=last`` too), rejected configs, on the GPU
where there is one, and one epoch on the real MNIST."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lit.config.checks import PROJECT_ROOT
from mnist_lit.data.mnist import DATASET as MNIST
from tests.conftest import armed_interrupt, assert_refused, run_cli, run_process, snapshot, synthetic_overrides

METRIC_KEYS = {"test/acc", "test/loss", "val/acc", "val/loss", "epochs", "best_epoch", "stopped_early", "fit_seconds"}


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def mlp_run(synthetic, tmp_path_factory) -> tuple[Path, object]:
    run_dir = tmp_path_factory.mktemp("runs") / "mlp"
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={run_dir}", "trainer.max_epochs=3")
    return run_dir, done


def test_run_writes_every_output(mlp_run):
    run_dir, done = mlp_run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics.keys() >= METRIC_KEYS
    assert 0 <= metrics["test/acc"] <= 1 and metrics["epochs"] <= 3
    last_line = done.stdout.strip().splitlines()[-1]
    assert str(run_dir) in last_line and f"test/acc {metrics['test/acc']:.4f}" in last_line


def test_metrics_json_agrees_with_tensorboard(mlp_run):
    run_dir, _ = mlp_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    logged = scalars(run_dir)
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"):
        assert tag in logged, tag
    val_loss = [v for _, v in logged["val/loss"]]
    assert len(val_loss) == metrics["epochs"]
    best = min(range(len(val_loss)), key=val_loss.__getitem__)
    assert metrics["best_epoch"] == best + 1
    assert metrics["val/loss"] == pytest.approx(val_loss[best], rel=1e-5)
    assert metrics["val/acc"] == pytest.approx(logged["val/acc"][best][1], rel=1e-5)
    assert metrics["test/acc"] == pytest.approx(logged["test/acc"][-1][1], rel=1e-5)
    # The Scalars tab: the curves and the test figures only (no `epoch` chart, no one-point run figures),
    # so its sections, in TensorBoard's alphabetical order, are test, train, val.
    assert set(logged) == {"train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"}
    # the best epoch's validation figures, for the HParams tab: one point on the validation curves
    best = scalars(run_dir / "best")
    assert set(best) == {"val/loss", "val/acc"}
    for tag in best:
        assert best[tag] == [logged[tag][metrics["best_epoch"] - 1]]
        assert best[tag][0][1] == pytest.approx(metrics[tag], rel=1e-5)
    assert [r["step"] for r in metrics["history"]] == [step for step, _ in logged["val/loss"]]


def test_checkpoints_load_weights_only_and_best_is_the_best_epoch(mlp_run):
    run_dir, _ = mlp_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert best["epoch"] + 1 == metrics["best_epoch"]
    assert last["epoch"] + 1 == metrics["epochs"]
    assert best["hyper_parameters"]["model"]["arch"] == "mlp"


def test_same_seed_same_metrics(synthetic, tmp_path, mlp_run):
    """Same seed and config: identical numbers; trainer.deterministic=true works and changes none on a CPU."""
    run_dir, _ = mlp_run
    run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}", "trainer.max_epochs=3",
            "trainer.deterministic=true")  # fmt: skip
    first = json.loads((run_dir / "metrics.json").read_text())
    second = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test/acc", "test/loss", "val/acc", "val/loss", "epochs", "best_epoch"):
        assert first[key] == second[key], key


def test_resume_from_last_checkpoint_continues_the_epoch_count(synthetic, tmp_path):
    run_dir = tmp_path / "run"
    common = [
        *synthetic_overrides(synthetic),
        "model=cnn",
        "model.filters=4",
        "model.dense=16",
        "callbacks.early_stopping.patience=100",
    ]
    run_cli("train.py", *common, f"hydra.run.dir={run_dir}", "trainer.max_epochs=1")
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 1
    last = run_dir / "checkpoints" / "last.ckpt"
    # No hydra.run.dir: a resumed run continues in its own directory.
    done = run_cli("train.py", *common, f"ckpt_path={last}", "trainer.max_epochs=3")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and [r["epoch"] for r in metrics["history"]] == [1, 2, 3]
    assert str(run_dir) in done.stdout.strip().splitlines()[-1] or str(run_dir) in done.stderr
    # One point an epoch, the resumed epochs' steps after the first's (TensorBoard reads the two runs' event
    # files in the order of their names, which within one second and one process need not be the runs' order).
    steps = sorted(s for s, _ in scalars(run_dir)["train/loss"])
    assert len(steps) == 3 and len(set(steps)) == 3 and steps[0] == metrics["history"][0]["step"]


def test_ckpt_path_last_resumes_the_newest_run_of_the_same_settings(synthetic, tmp_path):
    logs = tmp_path / "logs"
    common = [*synthetic_overrides(synthetic), f"paths.log_dir={logs}", "model.hidden=16", "trainer.max_epochs=2",
              "callbacks.early_stopping.patience=100", *armed_interrupt(tmp_path / "armed")]  # fmt: skip
    interrupted = run_process("train.py", *common, check=False)
    assert interrupted.returncode == 130, interrupted.stderr[-3000:]
    (run,) = (logs / "runs" / "mlp_h16_s42").iterdir()
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()
    # An older run of the same settings, and a newer one of other settings (another seed): neither is resumed.
    older = shutil.copytree(run, run.with_name("2000-01-01_00-00-00_000000"))
    os.utime(older / "checkpoints" / "last.ckpt", (0, 0))
    run_cli("train.py", *common, "seed=7", "trainer.max_epochs=1")
    (other,) = (logs / "runs" / "mlp_h16_s7").iterdir()
    kept = {folder: snapshot(folder) for folder in (older, other)}

    (tmp_path / "armed").unlink()
    # optimized_metric only names what train() returns, and the loggers record the run: neither is a setting of it
    done = run_cli("train.py", *common, "ckpt_path=last", "optimized_metric=val/acc", "logger=[tensorboard,csv]")
    assert f"Resuming from {run / 'checkpoints' / 'last.ckpt'}" in done.stdout
    assert (run / "metrics.csv").is_file()
    assert "Epoch 1/2" not in done.stdout and "Epoch 2/2" in done.stdout
    assert [r["epoch"] for r in json.loads((run / "metrics.json").read_text())["history"]] == [1, 2]
    assert sorted((logs / "runs" / "mlp_h16_s42").iterdir()) == sorted([run, older])  # in place: no new folder
    assert {folder: snapshot(folder) for folder in kept} == kept


def test_ckpt_path_last_without_a_run_of_these_settings_is_refused_leaving_nothing(synthetic, tmp_path):
    args = [*synthetic_overrides(synthetic), f"paths.log_dir={tmp_path / 'logs'}", "ckpt_path=last"]
    done = run_cli("train.py", *args, check=False)
    assert_refused(done, f"ckpt_path=last found no run to resume: no folder under {tmp_path / 'logs' / 'runs'} holds")
    assert list(tmp_path.iterdir()) == []
    done = run_cli("train.py", "-m", *args, "seed=1,2", check=False)
    assert_refused(done, "ckpt_path=last is not allowed in a multirun: run the same command with hydra.sweep.dir=")
    assert list(tmp_path.iterdir()) == []


def test_a_fold_resumes_only_as_that_fold_of_its_folds(synthetic, tmp_path):
    logs = tmp_path / "logs"
    common = [*synthetic_overrides(synthetic), f"paths.log_dir={logs}", "model.hidden=16",
              "callbacks.early_stopping.patience=100"]  # fmt: skip
    folds = ["cv=kfold", "cv.folds=3"]
    run_cli("train.py", *common, *folds, "cv.fold=1", "trainer.max_epochs=1")
    (run,) = (logs / "runs" / "mlp_h16_s42").iterdir()
    last = run / "checkpoints" / "last.ckpt"
    kept = snapshot(run)
    for other, said, fix in [
        ([*folds, "cv.fold=2"], "with cv.fold=2: it was trained with cv.fold=1", "cv.fold=1"),
        (["cv=kfold", "cv.folds=4", "cv.fold=1"], "with cv.folds=4: it was trained with cv.folds=3", "cv.folds=3"),
        ([], "with cv=null, with cv.fold=null: it was trained with cv.folds=3, with cv.fold=1",  # the 80/20 split
         "cv=kfold cv.folds=3 cv.fold=1"),
    ]:  # fmt: skip
        done = run_cli("train.py", *common, *other, f"ckpt_path={last}", "trainer.max_epochs=2", check=False)
        assert_refused(done, f"ckpt_path='{last}' cannot be resumed {said}")
        assert f"Resume with {fix} (" in done.stderr
        assert snapshot(run) == kept, other
    # ckpt_path=last: a run of another fold is another run; this fold's is found (and has no epoch left)
    done = run_cli("train.py", *common, *folds, "cv.fold=2", "trainer.max_epochs=1", "ckpt_path=last", check=False)
    assert_refused(done, "ckpt_path=last found no run to resume")
    done = run_cli("train.py", *common, *folds, "cv.fold=1", "trainer.max_epochs=1", "ckpt_path=last", check=False)
    assert_refused(done, f"ckpt_path='{last}' already holds 1 completed epochs")
    assert snapshot(run) == kept and list(run.parent.iterdir()) == [run]
    done = run_cli("train.py", *common, *folds, "cv.fold=1", "trainer.max_epochs=2", f"ckpt_path={last}")
    assert f"Resuming from {last}" in done.stdout
    assert [r["epoch"] for r in json.loads((run / "metrics.json").read_text())["history"]] == [1, 2]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model=cnn", "model.kernel_size=9", "model.blocks=3"], "model.kernel_size=9 with model.blocks=3"),
        (["optimizer.lr=-1"], "optimizer.lr=-1"),
        (["model=transformer"], "Could not find 'model/transformer'"),
        (["model.nonsense=3"], "nonsense"),
        (["keep_freed_memory=sometimes"], "keep_freed_memory='sometimes' is not allowed: it must be true or false"),
    ],
)
def test_bad_config_exits_with_a_clear_message(synthetic, tmp_path, overrides, expected):
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}", *overrides, check=False)
    assert done.returncode != 0
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.gpu
@pytest.mark.parametrize("on_device", [False, True], ids=["host-data", "device-data"])
def test_cnn_trains_on_the_gpu(synthetic, tmp_path, on_device):
    # 6 epochs of the 400 synthetic training images: the CNN reaches about 0.93 test accuracy on the CPU
    # (bf16 and fp32 alike); 2 epochs were too few to tell learning from chance (0.31 on an H100, 0.50 on the CPU).
    run_cli(
        "train.py", "model=cnn", "trainer=gpu", "trainer.precision=bf16-mixed", f"data.on_device={on_device}",
        *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}", "trainer.max_epochs=6",
        "callbacks.early_stopping.patience=6",
    )  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"] == 6 and metrics["test/acc"] > 0.8
    state = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
    assert state["hyper_parameters"]["model"]["arch"] == "cnn"


@pytest.mark.gpu
def test_speedrun_preset_on_the_gpu(synthetic, tmp_path):
    run_cli(
        "train.py", "experiment=speedrun", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}",
        "data.batch_size=64",
    )  # fmt: skip
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 4


@pytest.mark.gpu
def test_fp16_mixed_precision_scales_gradients_and_clips(synthetic, tmp_path):
    """16-mixed trains with Lightning's gradient scaler (its state in the checkpoint); clipping unscales first."""
    run_cli(
        "train.py", "model=cnn", "trainer=gpu", "trainer.precision=16-mixed", "+trainer.gradient_clip_val=1.0",
        *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}", "trainer.max_epochs=6",
        "callbacks.early_stopping.patience=6",
    )  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"] == 6 and metrics["test/acc"] > 0.8
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert "MixedPrecision" in state and state["MixedPrecision"]["scale"] > 0


@pytest.mark.real_data
def test_mlp_one_epoch_on_real_mnist(tmp_path):
    run_process("train.py", f"hydra.run.dir={tmp_path}", "trainer.max_epochs=1", timeout=900)
    raw = MNIST.raw_dir(PROJECT_ROOT / "data")
    for name, md5 in MNIST.files.items():
        assert hashlib.md5((raw / name).read_bytes()).hexdigest() == md5
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"] == 1
    assert metrics["val/acc"] >= 0.95, metrics
    assert metrics["test/acc"] >= 0.95, metrics


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
