"""``mnist_lit.config.store``: every network's dataclass defaults in Hydra's ConfigStore as ``network/<arch>``, the
conf/model/<arch>.yaml files composed on them, and a wrong value left to the project's own check, not Hydra's.
"""

from __future__ import annotations

import dataclasses

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from mnist_lit.config.store import network_classes, register_networks
from mnist_lit.errors import ConfigError
from mnist_lit.models.base import network_config
from tests.conftest import ROOT

MODEL_FILES = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))


def compose_model(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides)).model


def test_every_network_is_stored_as_network_arch_with_its_dataclass_defaults(monkeypatch):
    store = ConfigStore.instance()
    monkeypatch.delitem(store.repo, "network")  # what importing the module stored; put back after the test
    register_networks()
    classes = network_classes()
    network_modules = {p.stem for p in (ROOT / "mnist_lit" / "models").glob("*.py")} - {"__init__", "base"}
    assert {cls.__module__ for cls in classes} == {f"mnist_lit.models.{name}" for name in network_modules}
    assert sorted(store.repo["network"]) == [f"{arch}.yaml" for arch in MODEL_FILES]
    for cls in classes:
        defaults = dataclasses.asdict(cls.Config())
        stored = store.load(f"network/{defaults['arch']}.yaml")
        assert stored.group == "network"
        assert OmegaConf.to_container(stored.node) == defaults
        assert defaults["_target_"] == f"{cls.__module__}.{cls.__name__}"


@pytest.mark.parametrize("arch", MODEL_FILES)
def test_conf_model_files_compose_on_the_stored_defaults(arch):
    model = OmegaConf.to_container(compose_model(f"model={arch}"), resolve=True)
    stored = OmegaConf.to_container(ConfigStore.instance().load(f"network/{arch}.yaml").node)
    assert model["arch"] == arch
    assert {k: v for k, v in model.items() if k != "name"} == {k: v for k, v in stored.items() if k != "name"}
    assert model["name"].startswith(arch)  # the file's own name for the run, built from the settings


def test_the_stored_nodes_are_untyped_so_a_wrong_value_reaches_the_projects_check():
    # a typed (structured) node would make Hydra refuse "wide" with its own multi-line error
    model = compose_model("model=mlp", "model.hidden=wide", "model.layers=3")
    assert model.hidden == "wide" and model.layers == 3
    assert model.name == "mlp_hwide"
    with pytest.raises(ConfigError, match=r"model\.hidden='wide' is not allowed"):
        network_config(OmegaConf.to_container(model, resolve=True))
