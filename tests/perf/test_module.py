"""``perf=fast``: the same training as the default path, and what it cannot honour refused before training."""

from __future__ import annotations

import json

import pytest
import torch

from mnist_lit.config.checks import check_config
from mnist_lit.errors import ConfigError
from tests.conftest import compose_train, run_cli, synthetic_overrides, train_in_process

HISTORY_KEYS = ("train/loss", "train/acc", "val/loss", "val/acc")


@pytest.fixture(scope="module")
def default_run(synthetic, tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("default")
    return train_in_process(run_dir, *synthetic_overrides(synthetic), "trainer.max_epochs=3")


@pytest.mark.parametrize("steps_per_fetch", [32, 5])
def test_fast_path_trains_like_the_default(synthetic, tmp_path, default_run, steps_per_fetch):
    """The same batches in the same order: the same metrics as the standard LightningModule.

    32 batches a fetch take the 400 synthetic training images in one fetch; 5 in three, the last short.
    """
    fast = train_in_process(tmp_path, *synthetic_overrides(synthetic), "trainer.max_epochs=3", "perf=fast",
                            f"data.steps_per_fetch={steps_per_fetch}")  # fmt: skip
    assert len(fast["history"]) == len(default_run["history"]) == 3
    for a, b in zip(fast["history"], default_run["history"], strict=True):
        for key in HISTORY_KEYS:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    assert fast["test/acc"] == pytest.approx(default_run["test/acc"], abs=1e-6)
    assert fast["steps"] == default_run["steps"] == 3 * 13  # optimizer steps, counted alike
    # its checkpoints are the default module's: same keys and hyperparameters
    state = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert set(state["hyper_parameters"]) == {"model", "optimizer", "scheduler", "dataset"}


def test_fast_path_steps_the_one_cycle_schedule_per_optimizer_step(synthetic, tmp_path):
    train_in_process(tmp_path, *synthetic_overrides(synthetic), "perf=fast", "scheduler=onecycle",
                     "trainer.max_epochs=2", "data.steps_per_fetch=5")  # fmt: skip
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2 * 13
    assert state["lr_schedulers"][0]["total_steps"] == 2 * 13 == state["lr_schedulers"][0]["last_epoch"]


@pytest.mark.parametrize(
    "override, key",
    [
        ("+trainer.gradient_clip_val=1.0", "trainer.gradient_clip_val=1.0"),
        ("+trainer.accumulate_grad_batches=2", "trainer.accumulate_grad_batches=2"),
        ("trainer.limit_train_batches=5", "trainer.limit_train_batches=5"),
        ("+trainer.val_check_interval=4", "trainer.val_check_interval=4"),
        ("+trainer.max_steps=10", "trainer.max_steps=10"),
        ("+trainer.log_every_n_steps=5", "trainer.log_every_n_steps=5"),
        ("+callbacks.lr._target_=lightning.pytorch.callbacks.LearningRateMonitor", "callbacks.lr._target_="),
        ("+callbacks.model_checkpoint.every_n_train_steps=10", "callbacks.model_checkpoint.every_n_train_steps=10"),
        ("+callbacks.mine={_target_:tests.lightning_probes.BatchRecorder,output:recorded.pt}", "on_train_batch_start"),
        ("data.steps_per_fetch=0", "data.steps_per_fetch=0"),
    ],
)
def test_fast_path_refuses_what_it_cannot_honour(override, key):
    with pytest.raises(ConfigError) as refused:
        check_config(compose_train("perf=fast", override))
    assert key in str(refused.value)
    assert "perf=fast" in str(refused.value) or key.startswith("data.")
    check_config(compose_train(override.replace("data.steps_per_fetch=0", "data.batch_size=32")))  # the default: fine


def test_fast_path_refusal_on_the_command_line(synthetic, tmp_path):
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}", "perf=fast",
                   "+trainer.gradient_clip_val=1.0", check=False)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert error == [
        "Error: trainer.gradient_clip_val=1.0 is not allowed with perf=fast: the optimizer steps inside "
        "training_step, unclipped; remove perf=fast to use it (the default path is standard Lightning)"
    ]
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()


def test_the_default_path_takes_those_flags(synthetic, tmp_path):
    """What perf=fast refuses, the standard path runs (here together)."""
    run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}", "trainer.max_epochs=1",
            "+trainer.gradient_clip_val=1.0", "+trainer.accumulate_grad_batches=2", "trainer.limit_train_batches=6",
            "+callbacks.lr._target_=lightning.pytorch.callbacks.LearningRateMonitor")  # fmt: skip
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 3
