"""Lightning's Trainer flags through the real CLI mean what Lightning documents (synthetic data, MLP).

Each run adds ``tests.lightning_probes.BatchRecorder``; parameters after the first optimizer step
are compared with a plain PyTorch loop that starts from the same weights and takes the same batches.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lit.models.base import build_network
from mnist_lit.precision import choose_precision, cpu_device
from tests.conftest import N_TRAIN, run_cli, synthetic_overrides

BATCHES_PER_EPOCH = math.ceil(N_TRAIN * 4 // 5 / 32)  # 400 training images, batch 32: 13 batches


def train_recorded(synthetic, tmp_path, *overrides: str, check: bool = True):
    """``python train.py`` on the synthetic data with the recorder; returns (run dir, record, process)."""
    run_dir, output = tmp_path / "run", tmp_path / "record.pt"
    done = run_cli(
        "train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={run_dir}", "model.hidden=32",
        "+callbacks.recorder._target_=tests.lightning_probes.BatchRecorder", f"+callbacks.recorder.output={output}",
        *overrides, check=check,
    )  # fmt: skip
    record = torch.load(output, weights_only=True) if output.exists() else None
    return run_dir, record, done


SGD = ["optimizer._target_=torch.optim.SGD", "optimizer.lr=0.5"]


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


@pytest.mark.parametrize("profiler, marker", [("simple", "FIT Profiler Report"), ("advanced", "Profile stats for")])
def test_lightning_profilers(synthetic, tmp_path, profiler, marker):
    _, _, done = train_recorded(
        synthetic, tmp_path, f"trainer.profiler={profiler}", "trainer.max_epochs=1", "trainer.limit_train_batches=3"
    )
    report = done.stdout + done.stderr
    assert marker in report and "training_step" in report


def test_bf16_mixed_precision_trains(synthetic, tmp_path):
    run_dir, record, done = train_recorded(synthetic, tmp_path, "trainer.precision=bf16-mixed", "trainer.max_epochs=2")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # an explicit precision is honoured; where this CPU emulates bf16, one line says so
    warning = choose_precision("bf16-mixed", cpu_device(torch.cpu.get_capabilities())).warning
    assert (f"Warning: {warning}" in done.stdout + done.stderr) if warning else "Warning" not in done.stdout
    assert metrics["precision"] == "bf16-mixed"
    assert record["global_step"] == 2 * BATCHES_PER_EPOCH and metrics["test/acc"] > 0.5
    assert record["final"]["1.weight"].dtype == torch.float32  # autocast: the weights stay fp32
