"""What ``perf=fast`` cannot honour is refused before training, in-process and on the command line; the default
path takes it."""

from __future__ import annotations

import json

import pytest

from mnist_lit.config.checks import check_config
from mnist_lit.errors import ConfigError
from tests.conftest import compose_train, run_cli, synthetic_overrides


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


def test_fast_path_takes_the_neutral_values_of_those_flags():
    check_config(compose_train("perf=fast", "+trainer.gradient_clip_val=0", "+trainer.accumulate_grad_batches=1",
                               "+trainer.max_steps=-1", "trainer.limit_train_batches=0.5"))  # fmt: skip


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
