"""Both networks' shapes, and configurations rejected before anything runs."""

from __future__ import annotations

import pytest
import torch

from mnist_lit.config.checks import check_config
from mnist_lit.errors import ConfigError
from mnist_lit.evaluation.inference import classify
from mnist_lit.lit_module import DigitClassifier
from mnist_lit.models.base import build_network, count_parameters
from mnist_lit.models.cnn import CNN, feature_map_sizes
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


def test_feature_map_sizes():
    assert feature_map_sizes(2, 3) == [13, 5]
    with pytest.raises(ConfigError, match=r"model.kernel_size=9 with model.blocks=3"):
        feature_map_sizes(3, 9)


def test_module_hyperparameters_are_plain_values():
    cfg = compose_train("model=cnn")
    from mnist_lit.training import plain

    module = DigitClassifier(model=plain(cfg.model), optimizer=plain(cfg.optimizer))
    assert module.hparams.model["arch"] == "cnn"
    assert module(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    probabilities = classify(module, torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8))
    assert probabilities.shape == (3, 10) and torch.allclose(probabilities.sum(1), torch.ones(3))


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["model=cnn", "model.kernel_size=9", "model.blocks=3"], "model.kernel_size=9"),
        (["model=cnn", "model.blocks=5"], "model.blocks=5"),
        (["data.val_fraction=1.0"], "data.val_fraction=1.0"),
        (["data.val_fraction=0"], "data.val_fraction=0"),
        (["data.batch_size=0"], "data.batch_size=0"),
        (["optimizer.lr=0"], "optimizer.lr=0"),
        (["optimizer.lr=-0.1"], "optimizer.lr=-0.1"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0"),
        (["model.hidden=0"], "model.hidden=0"),
        (["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path='/nonexistent/last.ckpt'"),
    ],
)
def test_bad_values_are_rejected_naming_key_and_value(overrides, key):
    with pytest.raises(ConfigError) as info:
        check_config(compose_train(*overrides))
    assert key in str(info.value)
