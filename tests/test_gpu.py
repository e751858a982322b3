"""GPU paths (skipped without a CUDA GPU): images held on the device, bf16 autocast, the speed-run preset."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_cli, synthetic_overrides

pytestmark = pytest.mark.gpu


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


def test_speedrun_preset_on_the_gpu(synthetic, tmp_path):
    run_cli(
        "train.py", "experiment=speedrun", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}",
        "data.batch_size=64",
    )  # fmt: skip
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 4


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
