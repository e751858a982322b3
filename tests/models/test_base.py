"""What every network shares: built from its config, logits for a batch, the presentation's parameter names kept."""

from __future__ import annotations

import pytest
import torch

from mnist_lit.lit_module import DigitClassifier
from mnist_lit.models.base import build_network, count_parameters
from mnist_lit.models.cnn import CNN
from mnist_lit.models.mlp import MLP
from tests.conftest import compose_train


@pytest.mark.parametrize(
    "model, params",
    [
        (MLP(), 784 * 128 + 128 + 128 * 10 + 10),
        (CNN(), (9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 5 * 5 * 128 + 128) + (128 * 10 + 10)),
        (CNN(filters=16, blocks=3, kernel_size=3, dense=64), None),
        (CNN(kernel_size=5), None),
    ],
)
def test_networks_output_logits_for_a_batch(model, params):
    x = torch.randn(4, 1, 28, 28)
    assert model(x).shape == (4, 10)
    if params is not None:
        assert count_parameters(model) == params


def test_default_configs_build_the_seed_networks():
    mlp = build_network(compose_train().model)
    assert isinstance(mlp, MLP) and mlp[1].out_features == 128
    cnn = build_network(compose_train("model=cnn").model)
    convs = [m for m in cnn.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64] and convs[0].kernel_size == (3, 3)
    assert cnn.classifier[1].out_features == 128


# The parameter names of a checkpoint of the presentation's CNN and MLP, as they were saved before these options.
PLAIN_CNN_KEYS = [
    "features.0.weight",
    "features.0.bias",
    "features.3.weight",
    "features.3.bias",
    "classifier.1.weight",
    "classifier.1.bias",
    "classifier.4.weight",
    "classifier.4.bias",
]
PLAIN_MLP_KEYS = ["1.weight", "1.bias", "3.weight", "3.bias"]


def test_defaults_keep_the_presentations_parameter_names():
    assert list(build_network(compose_train("model=cnn").model).state_dict()) == PLAIN_CNN_KEYS
    assert list(build_network(compose_train().model).state_dict()) == PLAIN_MLP_KEYS


def test_a_checkpoint_config_without_the_new_keys_still_builds():
    old = {"arch": "cnn", "filters": 32, "blocks": 2, "kernel_size": 3, "dense": 128, "dropout": 0.5}
    module = DigitClassifier(model=old, optimizer={"_target_": "torch.optim.Adam", "_partial_": True})
    assert list(module.net.state_dict()) == PLAIN_CNN_KEYS
