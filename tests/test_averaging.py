"""``callbacks/averaging=ema|swa``: the averaged weights equal a plain loop's average of the same steps,
checkpoints hold them, a resume restores them, and ``perf=fast`` refuses them (synthetic data, MLP)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mnist_lit.config.checks import check_config
from mnist_lit.errors import ConfigError
from mnist_lit.models.base import build_network
from tests.conftest import BATCHES_PER_EPOCH, compose_train, run_cli, synthetic_overrides

EPOCHS = 2
DECAY = 0.9
AVERAGING = {
    "ema": ["callbacks/averaging=ema", f"callbacks.averaging.decay={DECAY}"],
    "swa": ["callbacks/averaging=swa", f"callbacks.averaging.epochs={EPOCHS}"],  # both epochs' ends
}


def train(synthetic, run_dir, method: str, *overrides: str) -> dict:
    """``python train.py`` with the averaging and the batch recorder; returns the record."""
    output = run_dir.parent / f"{run_dir.name}.record.pt"
    run_cli(
        "train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={run_dir}", "model.hidden=32",
        "+callbacks.recorder._target_=tests.lightning_probes.BatchRecorder", f"+callbacks.recorder.output={output}",
        f"+callbacks.recorder.keep_batches={EPOCHS * BATCHES_PER_EPOCH}", *AVERAGING[method], *overrides,
    )  # fmt: skip
    return torch.load(output, weights_only=True)


def assert_same_parameters(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name in actual:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def net_weights(state_dict: dict) -> dict[str, torch.Tensor]:
    """The network's tensors of a LightningModule state dict (``net.`` prefix removed)."""
    return {k.removeprefix("net."): v for k, v in state_dict.items() if k.startswith("net.")}


def plain_loop(record: dict, method: str, resumed_from: dict | None = None) -> tuple[dict, dict]:
    """Adam over the recorded batches from the recorded weights; returns (current weights, their average).

    ``resumed_from``: a checkpoint whose optimizer state and average the loop continues from.
    """
    net = build_network({"arch": "mlp", "hidden": 32})
    net.load_state_dict(record["initial"])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    average: dict[str, torch.Tensor] | None = None
    averaged = 0
    if resumed_from is not None:
        optimizer.load_state_dict(resumed_from["optimizer_states"][0])
        average = net_weights(resumed_from["state_dict"])
        averaged = int(resumed_from["averaging_state"]["n_averaged"])
    for step, (images, labels) in enumerate(record["batches"], start=1):
        optimizer.zero_grad()
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()
        weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if method == "ema":  # after every step; the first copies
            average = (
                weights if average is None else {k: DECAY * average[k] + (1 - DECAY) * weights[k] for k in weights}
            )
        elif step % BATCHES_PER_EPOCH == 0:  # swa: at the end of every epoch, equal weights
            averaged += 1
            average = (
                weights if average is None else {k: average[k] + (weights[k] - average[k]) / averaged for k in weights}
            )
    assert average is not None
    return net.state_dict(), average


@pytest.mark.parametrize("method", ["ema", "swa"])
def test_averaged_weights_match_a_plain_loop_and_survive_a_resume(synthetic, tmp_path, method):
    record = train(synthetic, tmp_path / "full", method, f"trainer.max_epochs={EPOCHS}")
    assert len(record["batches"]) == EPOCHS * BATCHES_PER_EPOCH
    current, average = plain_loop(record, method)
    last = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    # last.ckpt: the average as its weights (what evaluate.py and load_classifier read), the current beside it
    assert_same_parameters(net_weights(last["state_dict"]), average)
    assert_same_parameters(net_weights(last["current_model_state"]), current)
    with pytest.raises(AssertionError):
        assert_same_parameters(average, current)  # the average is not the last step's weights
    # best.ckpt holds an average too (validation scored it), and the test ran on best.ckpt's weights
    best = torch.load(tmp_path / "full" / "checkpoints" / "best.ckpt", weights_only=True)
    assert "current_model_state" in best and best["epoch"] in range(EPOCHS)
    assert_same_parameters(record["final"], average)  # training ends with the average in the model

    # One epoch, then resumed to the second: the resumed run starts from the checkpoint's current weights
    # and continues its average (a plain loop from the same state over the same batches agrees).
    train(synthetic, tmp_path / "part", method, "trainer.max_epochs=1")
    part_last = tmp_path / "part" / "checkpoints" / "last.ckpt"
    first = torch.load(part_last, weights_only=True)
    record = train(synthetic, tmp_path / "part", method, f"trainer.max_epochs={EPOCHS}", f"ckpt_path={part_last}")
    assert_same_parameters(record["initial"], net_weights(first["current_model_state"]))
    current, average = plain_loop(record, method, resumed_from=first)
    resumed = torch.load(part_last, weights_only=True)
    assert resumed["global_step"] == EPOCHS * BATCHES_PER_EPOCH
    assert_same_parameters(net_weights(resumed["state_dict"]), average)
    assert_same_parameters(net_weights(resumed["current_model_state"]), current)
    # resuming it without the averaging would train on from the average: refused, nothing written
    before = part_last.read_bytes()
    refused = run_cli("train.py", *synthetic_overrides(synthetic), "model.hidden=32", f"ckpt_path={part_last}",
                      f"trainer.max_epochs={EPOCHS + 1}", check=False)  # fmt: skip
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    said = "cannot be resumed without callbacks/averaging: it was trained with callbacks/averaging"
    assert f"Error: ckpt_path={str(part_last)!r} {said}" in refused.stderr
    assert part_last.read_bytes() == before


def test_swa_validates_the_current_weights_until_it_averages(synthetic, tmp_path):
    """Averaging the last epoch of 2, stopped after the first: as without the callback (nothing averaged)."""
    # stops after epoch 1, before averaging began
    train(synthetic, tmp_path / "late", "swa", "trainer.max_epochs=2", "callbacks.averaging.epochs=1",
          "+callbacks.early_stopping.stopping_threshold=100")  # fmt: skip
    early = torch.load(tmp_path / "late" / "checkpoints" / "last.ckpt", weights_only=True)
    assert early["epoch"] == 0 and "current_model_state" not in early


@pytest.mark.parametrize("option", ["ema", "swa"])
def test_perf_fast_refuses_weight_averaging(option):
    with pytest.raises(ConfigError, match=r"callbacks\.averaging\._target_=.* is not allowed with perf=fast"):
        check_config(compose_train("perf=fast", f"callbacks/averaging={option}"))
    check_config(compose_train(f"callbacks/averaging={option}"))  # the default path takes it
