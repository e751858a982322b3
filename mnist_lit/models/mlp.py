"""The presentation's MLP, 784 -> 128 (ReLU) -> 10 on MNIST, with options for deeper and regularised ones."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from mnist_lit.config.schema import setting
from mnist_lit.models.base import IMAGE_SIZE, NetworkConfig


@dataclasses.dataclass
class MLPConfig(NetworkConfig):
    """The MLP's settings: the one place their types, ranges and defaults live (conf/model/mlp.yaml builds on it)."""

    _target_: str = "mnist_lit.models.mlp.MLP"
    arch: str = "mlp"
    name: str = "mlp"
    hidden: int = setting(128, low=1, shape=True)  # units of each hidden layer
    layers: int = setting(1, low=1, high=64, shape=True)  # hidden layers (2: 784 -> hidden -> hidden -> 10)
    dropout: float = setting(0.0, low=0, high=1, high_open=True)  # after each hidden layer (0: none)


class MLP(nn.Sequential):
    """pixels -> hidden (ReLU) [-> hidden (ReLU) ...] -> classes; ``options`` are ``MLPConfig``'s settings.

    The input has ``channels * image_size**2`` pixels (784 for MNIST). The defaults give the presentation's
    network; ``dropout`` > 0 adds dropout after each hidden layer.
    """

    Config = MLPConfig

    def __init__(self, channels: int = 1, image_size: int = IMAGE_SIZE, **options: Any) -> None:
        c = MLPConfig(**options)
        modules: list[nn.Module] = [nn.Flatten()]
        width = channels * image_size * image_size
        for _ in range(c.layers):
            modules += [nn.Linear(width, c.hidden), nn.ReLU()]
            if c.dropout:
                modules.append(nn.Dropout(c.dropout))
            width = c.hidden
        super().__init__(*modules, nn.Linear(width, c.num_classes))
