"""Training as configured: Lightning's Trainer flags mean what Lightning documents, the speed-run preset, a compiled
model, a diverging run, the epoch metrics.json reports as the best.

The flag tests add ``tests.lightning_probes.BatchRecorder``; parameters after the first optimizer step are compared
with a plain PyTorch loop that starts from the same weights and takes the same batches."""

from __future__ import annotations

import collections
import functools
import json

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lit.data.datamodule import IDXDataModule
from mnist_lit.models.base import build_network
from mnist_lit.training import summarise
from tests.conftest import (
    BATCHES_PER_EPOCH,
    run_cli,
    run_process,
    synthetic_overrides,
    train_in_process,
    train_recorded,
)

SGD = ["optimizer._target_=torch.optim.SGD", "optimizer.lr=0.5"]


def test_the_best_epoch_is_the_one_the_best_checkpoint_keeps():
    history = [
        {"epoch": 1, "val/loss": 0.30, "val/acc": 0.95},
        {"epoch": 2, "val/loss": 0.20, "val/acc": 0.97},
        {"epoch": 3, "val/loss": 0.25, "val/acc": 0.98},
        {"epoch": 4, "val/loss": 0.26, "val/acc": 0.98},
        {"epoch": 5, "val/loss": float("nan"), "val/acc": 0.10},
    ]
    test = {"test/acc": 0.9, "test/loss": 0.3}
    by_loss = summarise(history, test, ModelCheckpoint(monitor="val/loss", mode="min"))
    assert by_loss == {**test, "val/acc": 0.97, "val/loss": 0.20, "best_epoch": 2}
    by_acc = summarise(history, test, ModelCheckpoint(monitor="val/acc", mode="max"))
    assert by_acc == {**test, "val/acc": 0.98, "val/loss": 0.25, "best_epoch": 3}  # a tie keeps the first
    assert summarise(history, test, ModelCheckpoint(monitor=None))["best_epoch"] == 4  # the last finite epoch
    assert summarise(history[4:], {}, ModelCheckpoint(monitor="val/acc", mode="max"))["best_epoch"] is None


def plain_first_step(
    record: dict, batches: int, clip: tuple[str, float] | None = None, sgd: bool = False
) -> dict[str, torch.Tensor]:
    """A plain loop from the recorded initial weights: ``batches`` batches accumulated into one optimizer step."""
    net = build_network({"arch": "mlp", "hidden": 32})
    net.load_state_dict(record["initial"])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5) if sgd else torch.optim.Adam(net.parameters(), lr=1e-3)
    for images, labels in record["batches"][:batches]:
        (F.cross_entropy(net(images), labels) / batches).backward()
    if clip is not None:
        algorithm, value = clip
        if algorithm == "norm":
            torch.nn.utils.clip_grad_norm_(net.parameters(), value)
        else:
            torch.nn.utils.clip_grad_value_(net.parameters(), value)
    optimizer.step()
    return net.state_dict()


def assert_same_parameters(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name in actual:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("algorithm, value", [("norm", 0.05), ("value", 0.001)])
def test_gradient_clipping_matches_a_plain_loop(synthetic, tmp_path, algorithm, value):
    # SGD: Adam's first step is lr * sign(gradient), which clipping hardly changes
    _, record, _ = train_recorded(
        synthetic, tmp_path, *SGD, "+trainer.max_steps=1", f"+trainer.gradient_clip_val={value}",
        f"+trainer.gradient_clip_algorithm={algorithm}",
    )  # fmt: skip
    assert record["global_step"] == 1
    assert_same_parameters(record["final"], plain_first_step(record, 1, (algorithm, value), sgd=True))
    # the clipping changed the step: without it the parameters differ
    unclipped = plain_first_step(record, 1, sgd=True)
    assert any(not torch.allclose(unclipped[k], record["final"][k], atol=1e-6) for k in unclipped)


def test_gradient_accumulation_matches_a_plain_loop(synthetic, tmp_path):
    _, record, _ = train_recorded(synthetic, tmp_path, "+trainer.max_steps=1", "+trainer.accumulate_grad_batches=4")
    assert record["global_step"] == 1 and record["batch_ends"] == 4  # four batches for one optimizer step
    assert_same_parameters(record["final"], plain_first_step(record, 4))


def test_limit_train_batches_counts_batches(synthetic, tmp_path):
    run_dir, record, _ = train_recorded(synthetic, tmp_path, "trainer.limit_train_batches=5", "trainer.max_epochs=2")
    assert record["batches_per_epoch"] == 5 and record["batch_ends"] == 10
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 10
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 10


def test_max_steps_counts_batches(synthetic, tmp_path):
    _, record, _ = train_recorded(synthetic, tmp_path, "+trainer.max_steps=7")
    assert record["global_step"] == 7 and record["batch_ends"] == 7


def test_val_check_interval_counts_batches(synthetic, tmp_path):
    _, record, _ = train_recorded(synthetic, tmp_path, "+trainer.val_check_interval=4", "trainer.max_epochs=1")
    assert record["validated_at"] == [4, 8, 12]


def test_every_batch_reaches_a_users_callback_once(synthetic, tmp_path):
    _, record, _ = train_recorded(synthetic, tmp_path, "trainer.max_epochs=2", "callbacks.early_stopping.patience=5")
    assert record["batches_per_epoch"] == BATCHES_PER_EPOCH  # what the progress bar counts
    assert record["batch_ends"] == 2 * BATCHES_PER_EPOCH
    assert record["global_step"] == 2 * BATCHES_PER_EPOCH


def test_learning_rate_monitor_follows_the_one_cycle_schedule(synthetic, tmp_path):
    """LearningRateMonitor logs every log_every_n_steps optimizer steps; the one-cycle rate rises, then anneals."""
    run_dir, record, _ = train_recorded(
        synthetic, tmp_path, "scheduler=onecycle", "trainer.max_epochs=2", "callbacks.early_stopping.patience=5",
        "+trainer.log_every_n_steps=2",
        "+callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor",
        "+callbacks.lr_monitor.logging_interval=step",
    )  # fmt: skip
    steps = 2 * BATCHES_PER_EPOCH
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == steps
    assert last["lr_schedulers"][0]["total_steps"] == steps == last["lr_schedulers"][0]["last_epoch"]
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    logged = events.Scalars("lr-Adam")
    assert [e.step for e in logged] == list(range(1, steps, 2))  # every second optimizer step
    values = [e.value for e in logged]
    peak = values.index(max(values))
    assert 0 < peak < len(values) - 1 and max(values) == pytest.approx(0.01, rel=0.05)
    assert values[-1] < values[0] and record["lr"][-1] < 0.01 / 10
    # and the rate the optimizer used at each of those steps is the logged one
    assert values == pytest.approx([record["lr"][e.step] for e in logged], rel=1e-5)


def test_speedrun_preset_runs_on_cpu(synthetic, tmp_path):
    """GPU preset (images on the device, one-cycle, bf16) still trains on a CPU."""
    metrics = train_in_process(
        tmp_path, "experiment=speedrun", *synthetic_overrides(synthetic),
        "data.batch_size=64", "data.eval_batch_size=100", "trainer.max_epochs=2", "model.filters=8",
    )  # fmt: skip
    assert metrics["epochs"] == 2 and metrics["test/acc"] is not None
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["hyper_parameters"]["model"]["arch"] == "cnn"
    # The one-cycle schedule was stepped once per optimizer step (manual optimisation steps it).
    steps = 2 * -(-400 // 64)
    assert state["global_step"] == steps
    assert state["lr_schedulers"][0]["last_epoch"] == steps
    # its length is the run's optimizer steps (one fetch of 32 batches holds an epoch's 7 here)
    assert state["lr_schedulers"][0]["total_steps"] == steps
    # and annealed to a small fraction of its peak (max_lr 0.01), as one-cycle does
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] < 0.01 / 10


def test_compiled_model_trains_and_saves_plain_checkpoints(synthetic, tmp_path):
    # In its own process: torch.compile's compiler, its caches and its worker threads are the process's.
    run_process(
        "train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}", "model.compile=true",
        "trainer.max_epochs=1", "model.hidden=16",
    )  # fmt: skip
    state = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert set(state["state_dict"]) >= {"net.1.weight", "net.3.bias"}  # no _orig_mod. prefixes
    assert json.loads((tmp_path / "metrics.json").read_text())["test/acc"] is not None


def test_diverging_run_stops_with_a_reason(synthetic, tmp_path):
    done = run_cli(
        "train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}",
        "optimizer.lr=1e30", "trainer.max_epochs=20", check=False,
    )  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["stopped_early"] is True
    assert "not finite" in metrics["stop_reason"], metrics["stop_reason"]
    assert metrics["epochs"] < 20 and metrics["test/acc"] is None
    assert "Training diverged" in done.stdout and "optimizer.lr" in done.stdout


def test_a_run_checks_its_config_once_and_builds_its_trainer_and_callbacks_once(synthetic, tmp_path, monkeypatch):
    """``python train.py``: the run directory's guard reads no config; the job checks it once, and the data module,
    the Trainer and each callback it trains with are built once."""
    import lightning as L

    import mnist_lit.config.checks

    calls: collections.Counter[str] = collections.Counter()

    def counted(name: str, function):
        @functools.wraps(function)  # its signature, which the checks read
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(mnist_lit.config.checks, "check_data", counted("check", mnist_lit.config.checks.check_data))
    monkeypatch.setattr(L.Trainer, "__init__", counted("trainer", L.Trainer.__init__))
    monkeypatch.setattr(ModelCheckpoint, "__init__", counted("checkpoint", ModelCheckpoint.__init__))
    monkeypatch.setattr(IDXDataModule, "__init__", counted("data", IDXDataModule.__init__))
    run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path / 'run'}", "trainer.max_epochs=1")
    assert calls == {"check": 1, "data": 1, "trainer": 1, "checkpoint": 2}  # best.ckpt and last.ckpt
