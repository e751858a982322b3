"""The CNN's options: each one adds its layers, feature-map sizes, batch norm deterministic in eval mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnist_lit.errors import ConfigError
from mnist_lit.models.cnn import CNN, feature_map_sizes
from tests.conftest import layer_types


def test_each_cnn_option_adds_its_layers():
    x = torch.randn(5, 1, 28, 28)
    net = CNN(convs_per_block=2, batch_norm=True, block_dropout=0.25, global_pool=True, dense=64)
    assert net(x).shape == (5, 10)
    types = layer_types(net)
    assert types.count(nn.Conv2d) == 4 and types.count(nn.BatchNorm2d) == 4 and types.count(nn.BatchNorm1d) == 1
    assert types.count(nn.AdaptiveAvgPool2d) == 1 and types.count(nn.Dropout) == 3  # two blocks + dense
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64] and all(c.bias is None for c in convs)
    assert net.classifier[2].in_features == 64  # global pooling: one value per final channel
    flat = CNN(convs_per_block=2)
    assert flat.classifier[1].in_features == 64 * 4 * 4  # 28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4
    assert nn.BatchNorm2d not in layer_types(flat) and nn.AdaptiveAvgPool2d not in layer_types(flat)


def test_batch_norm_cnn_in_eval_mode_is_deterministic():
    net = CNN(batch_norm=True, block_dropout=0.5).eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(net(x), net(x))


def test_feature_map_sizes_with_two_convolutions_per_block():
    assert feature_map_sizes(2, 3, convs_per_block=2) == [12, 4]
    with pytest.raises(ConfigError, match=r"model.convs_per_block=3 cannot work"):
        feature_map_sizes(3, 3, convs_per_block=3)


def test_feature_map_sizes():
    assert feature_map_sizes(2, 3) == [13, 5]
    with pytest.raises(ConfigError, match=r"model.kernel_size=9 with model.blocks=3"):
        feature_map_sizes(3, 9)
