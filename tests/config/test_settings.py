"""``mnist_lit.config.settings``: each declaration covers its config file's keys, so that no key of conf/ goes
unchecked, and a declared key that no config file has is not left behind."""

from __future__ import annotations

import dataclasses

import pytest

from mnist_lit.config.checks import command_config
from mnist_lit.config.settings import EvalSettings, PredictSettings, TrainSettings
from tests.conftest import compose_train


def declared(schema: type) -> set[str]:
    return {f.name for f in dataclasses.fields(schema)}


@pytest.mark.parametrize("command, schema", [("eval", EvalSettings), ("predict", PredictSettings)])
def test_a_commands_settings_declare_its_config_files_keys(command, schema):
    keys = set(command_config(command))
    assert keys == declared(schema)


def test_the_train_settings_declare_every_top_level_key_and_group():
    assert set(compose_train("scheduler=onecycle", "cv=kfold")) == declared(TrainSettings)
