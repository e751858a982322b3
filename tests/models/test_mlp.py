"""The MLP: its layers and dropout."""

from __future__ import annotations

import torch
from torch import nn

from mnist_lit.models.mlp import MLP
from tests.conftest import layer_types


def test_mlp_layers_and_dropout():
    net = MLP(hidden=64, layers=3, dropout=0.2)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    types = layer_types(net)
    assert types.count(nn.Linear) == 4 and types.count(nn.Dropout) == 3
