"""Training options beyond the defaults: the speed-run preset (on CPU), bf16 autocast, torch.compile, profilers."""

from __future__ import annotations

import json

import torch

from tests.conftest import run_cli, run_process, synthetic_overrides, train_in_process


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


def test_a_lightning_profiler_replaces_the_null_one(synthetic, tmp_path):
    """The default profiler profiles nothing; ``trainer.profiler=simple`` gives Lightning's report."""
    overrides = [*synthetic_overrides(synthetic), "trainer.max_epochs=1", "evaluate_after_fit=false"]
    quiet = run_cli("train.py", *overrides, f"hydra.run.dir={tmp_path / 'null'}")
    profiled = run_cli("train.py", *overrides, f"hydra.run.dir={tmp_path / 'simple'}", "trainer.profiler=simple")
    assert "Profiler Report" not in quiet.stdout + quiet.stderr
    report = profiled.stdout + profiled.stderr
    assert "FIT Profiler Report" in report and "run_training_epoch" in report
    # the per-hook timings that the null profiler skips
    assert "[Callback]ModelCheckpoint" in report and "on_before_optimizer_step" in report
