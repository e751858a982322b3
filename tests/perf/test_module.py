"""``perf=fast``'s LightningModule: the same training as the default path, the one-cycle schedule stepped per
optimizer step."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import synthetic_overrides, train_in_process

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
    assert set(state["hyper_parameters"]) == {"model", "optimizer", "scheduler", "dataset", "data"}


def test_fast_path_steps_the_one_cycle_schedule_per_optimizer_step(synthetic, tmp_path):
    train_in_process(tmp_path, *synthetic_overrides(synthetic), "perf=fast", "scheduler=onecycle",
                     "trainer.max_epochs=2", "data.steps_per_fetch=5")  # fmt: skip
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2 * 13
    assert state["lr_schedulers"][0]["total_steps"] == 2 * 13 == state["lr_schedulers"][0]["last_epoch"]
