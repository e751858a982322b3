"""The typed schema under attack: every leaf key of the composed train, eval and predict configs gets wrong values
of every kind. Each must be refused by the checks with an ``Error:`` naming the key, or be accepted and then build
(data module, model, trainer) as train.py would build it. Anything else (a traceback, a silent change) fails."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EarlyStopping
from omegaconf import DictConfig, OmegaConf

from mnist_lit.config.checks import check_config, command_config
from mnist_lit.config.schema import built_or_refused, check_target, typed
from mnist_lit.config.settings import EvalSettings, PredictSettings
from mnist_lit.errors import ConfigError, UserError
from mnist_lit.training import build
from tests.conftest import LONG_NAME, compose_train, set_value


def wrong_values(value: Any) -> list[Any]:
    """Values of the wrong type or out of any sensible range for a key whose value is ``value``."""
    if isinstance(value, bool):
        return ["maybe", 1]
    if isinstance(value, int):
        return ["abc", 1.5, -1, 10**12, None]
    if isinstance(value, float):
        return ["abc", -1.0, math.nan, math.inf, None]
    if isinstance(value, str):
        return [2024, [1], "", LONG_NAME]
    if isinstance(value, list):
        return ["abc", None]
    return ["abc", -1, [1]]  # null by default


def leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a plain config (lists count as leaves)."""
    if isinstance(node, dict):
        found = []
        for key, value in node.items():
            found += leaves(value, f"{prefix}{key}.")
        return found
    return [(prefix[:-1], node)]


def attack_cases(config: DictConfig, skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    plain = OmegaConf.to_container(config, resolve=False)
    plain.pop("hydra", None)
    return [(key, bad) for key, value in leaves(plain) if key not in skip for bad in wrong_values(value)]


def names_key(message: str, key: str) -> bool:
    """A refusal names the key it refuses: itself, or the group it belongs to (what a class refused)."""
    parts = key.split(".")
    return any(".".join(parts[:n]) in message for n in range(len(parts), 0, -1))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "train_case" in metafunc.fixturenames:
        cfg = compose_train()  # the keys are those of the default config; values come from the fixture's
        cases = attack_cases(cfg)
        metafunc.parametrize("train_case", cases, ids=[f"{k}={v!r}"[:80] for k, v in cases])
    for name, command in (("eval_case", "eval"), ("predict_case", "predict")):
        if name in metafunc.fixturenames:
            cases = attack_cases(command_config(command))
            metafunc.parametrize(name, cases, ids=[f"{k}={v!r}"[:80] for k, v in cases])


def test_train_config_leaf(train_config: DictConfig, train_case: tuple[str, Any]) -> None:
    key, value = train_case
    cfg = set_value(train_config, key, value)
    try:
        check_config(cfg)
        build(cfg)  # accepted: it must then build as train.py builds it, or be refused by the class it names
    except ConfigError as e:
        message = str(e)
        assert names_key(message, key), f"{key}={value!r}: the refusal names another key: {message}"
        assert "\n" not in message.strip(), message


def test_eval_config_leaf(eval_case: tuple[str, Any]) -> None:
    key, value = eval_case
    cfg = set_value(command_config("eval"), key, value)
    try:
        typed(cfg, EvalSettings, "", open_keys=True)
    except UserError as e:
        assert names_key(str(e), key), f"{key}={value!r}: the refusal names another key: {e}"


def test_predict_config_leaf(predict_case: tuple[str, Any]) -> None:
    key, value = predict_case
    cfg = set_value(command_config("predict", ckpt_path="best.ckpt", images="a.png"), key, value)
    try:
        typed(cfg, PredictSettings, "", open_keys=True)
    except UserError as e:
        assert names_key(str(e), key) or key in ("ckpt_path", "images"), f"{key}={value!r}: {e}"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=cnn", "model.convs_per_block=0"], "model.convs_per_block=0 is not allowed"),
        (["model=cnn", "model.convs_per_block=3", "model.blocks=3"], "model.convs_per_block=3 cannot work"),
        (["model=cnn", "model.block_dropout=1.0"], "model.block_dropout=1.0 is not allowed"),
        (["model=cnn", "model.batch_norm=maybe"], "model.batch_norm='maybe' is not allowed: it must be true or false"),
        (["model=cnn", "model.global_pool=1"], "model.global_pool=1 is not allowed"),
        (["model=cnn", "model.kernel_size=9", "model.blocks=3"], "model.kernel_size=9"),
        (["model=cnn", "model.blocks=5"], "model.blocks=5"),
        (["model.layers=0"], "model.layers=0 is not allowed"),
        (["model.dropout=-0.1"], "model.dropout=-0.1 is not allowed"),
        (["model.hidden=0"], "model.hidden=0"),
        (["data.augment=cutout"], "data.augment='cutout' is not allowed"),
        (["data.val_fraction=1.0"], "data.val_fraction=1.0"),
        (["data.val_fraction=0"], "data.val_fraction=0"),
        (["data.batch_size=0"], "data.batch_size=0"),
        (["optimizer.lr=0"], "optimizer.lr=0"),
        (["optimizer.lr=-0.1"], "optimizer.lr=-0.1"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0"),
        (["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path='/nonexistent/last.ckpt'"),
    ],
)
def test_bad_values_are_rejected_naming_key_and_value(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(compose_train(*overrides))


# A _target_ group against the signature of the class it names.

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
    assert check_target({**adam, "interval": "step"}, "optimizer", skip=("interval",)) is torch.optim.Adam


def test_a_key_the_class_does_not_take_is_refused_with_the_keys_it_takes():
    with pytest.raises(ConfigError) as refused:
        check_target({"_target_": TRAINER, "max_epoch": 3}, "trainer")
    message = str(refused.value)
    assert message.startswith(f"trainer.max_epoch is not a setting of {TRAINER}: choose from ")
    allowed = message.split("choose from ")[1].split(", ")
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
         "optimizer.betas=[0.9] is not allowed: torch.optim.Adam takes tuple[float"),
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
