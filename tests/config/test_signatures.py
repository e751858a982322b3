"""``mnist_lit.config.signatures``: a ``_target_`` group checked against the signature of the class it names (an
unknown key, a value of the wrong type, in nested groups too), and a class that refuses its settings when built,
each refused with a ConfigError that names the key, the value and what is allowed; good groups pass.
"""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EarlyStopping

from mnist_lit.config.signatures import built_or_refused, check_target
from mnist_lit.errors import ConfigError

TRAINER = "lightning.pytorch.Trainer"
EARLY_STOPPING = "lightning.pytorch.callbacks.EarlyStopping"


def test_groups_that_fit_their_class_pass_and_name_it():
    early_stopping = {"_target_": EARLY_STOPPING, "monitor": "val/loss", "patience": 3, "mode": "min"}
    trainer = {"_target_": TRAINER, "max_epochs": 3, "precision": "bf16-mixed", "callbacks": [early_stopping]}
    assert check_target(trainer, "trainer") is Trainer
    assert check_target(trainer["callbacks"][0], "callbacks.early_stopping") is EarlyStopping
    adam = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3, "betas": [0.9, 0.99]}
    assert check_target(adam, "optimizer") is torch.optim.Adam
    # keys the project reads itself are not the class's to accept
    assert check_target({**adam, "interval": "step"}, "optimizer", own_keys=("interval",)) is torch.optim.Adam


def test_a_key_the_class_does_not_take_is_refused_with_the_keys_it_takes():
    with pytest.raises(ConfigError) as refused:
        check_target({"_target_": TRAINER, "max_epoch": 3}, "trainer")
    message = str(refused.value)
    assert message.startswith(f"trainer.max_epoch is not a setting of {TRAINER}: it takes ")
    allowed = message.split("it takes ")[1].split(", ")
    assert {"max_epochs", "precision", "devices", "callbacks"} <= set(allowed)
    assert allowed == sorted(allowed)
    assert "max_epoch" not in allowed


@pytest.mark.parametrize(
    ("node", "key", "expected"),
    [
        ({"_target_": TRAINER, "max_epochs": "3"}, "trainer",
         f"trainer.max_epochs='3' is not allowed: {TRAINER} takes an integer or null"),
        ({"_target_": TRAINER, "enable_progress_bar": 1}, "trainer",
         f"trainer.enable_progress_bar=1 is not allowed: {TRAINER} takes true or false"),
        ({"_target_": "torch.optim.Adam", "lr": 1e-3, "betas": [0.9]}, "optimizer",
         "optimizer.betas=[0.9] is not allowed: torch.optim.Adam takes a list of 2"),
        ({"_target_": TRAINER, "callbacks": [{"_target_": EARLY_STOPPING, "monitor": "val/loss", "patience": 2.5}]},
         "trainer", f"trainer.callbacks[0].patience=2.5 is not allowed: {EARLY_STOPPING} takes an integer"),
    ],
    ids=["string-for-int", "int-for-bool", "short-tuple", "nested-callback"],
)  # fmt: skip
def test_a_value_of_the_wrong_type_is_refused_naming_key_value_and_type(node, key, expected):
    with pytest.raises(ConfigError) as refused:
        check_target(node, key)
    assert str(refused.value).startswith(expected), str(refused.value)


def test_a_library_class_that_refuses_its_settings_is_a_config_error_and_a_project_bug_is_not():
    weight = torch.zeros(1, requires_grad=True)
    with pytest.raises(ConfigError, match=r"^optimizer cannot be built with these settings: torch.optim.Adam refuses "
                                          r"them \(ValueError: Invalid learning rate: -1"):  # fmt: skip
        built_or_refused("optimizer", "torch.optim.Adam", lambda: torch.optim.Adam([weight], lr=-1.0))
    built = built_or_refused("optimizer", "torch.optim.Adam", lambda: torch.optim.Adam([weight], lr=0.1))
    assert isinstance(built, torch.optim.Adam) and built.param_groups[0]["lr"] == 0.1

    def broken_network():
        raise KeyError("layers")  # in the project's own class: a bug, whose traceback must show

    with pytest.raises(KeyError):
        built_or_refused("model", "mnist_lit.models.mlp.MLP", broken_network)
