"""Every network's settings in Hydra's ConfigStore, as ``network/<arch>``: conf/model/<arch>.yaml builds on them.

Imported by train.py before Hydra composes. Each network module under mnist_lit/models/ is found and
registered by itself: adding a network is its module and its conf/model file. The stored nodes hold
the dataclasses' defaults without their types, so that a wrong value on the command line reaches the
project's own check (``mnist_lit.config.schema.typed``) and its one-line error.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

from hydra.core.config_store import ConfigStore
from torch import nn

import mnist_lit.models


def network_classes() -> list[type[nn.Module]]:
    """Every network of the project: each module of mnist_lit.models and the networks it defines."""
    found = []
    for info in pkgutil.iter_modules(mnist_lit.models.__path__):
        module = importlib.import_module(f"{mnist_lit.models.__name__}.{info.name}")
        found += [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__
            and dataclasses.is_dataclass(getattr(obj, "Config", None))
        ]  # fmt: skip
    return found


def register_networks() -> None:
    """Store each network's default settings as ``network/<arch>`` in Hydra's ConfigStore."""
    store = ConfigStore.instance()
    for cls in network_classes():
        defaults = dataclasses.asdict(cls.Config())
        store.store(group="network", name=defaults["arch"], node=defaults)


register_networks()
