"""The stronger networks' options: defaults that keep the presentation's layers, each option built and checked."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from mnist_lit.config.checks import check_config
from mnist_lit.errors import ConfigError
from mnist_lit.lit_module import DigitClassifier
from mnist_lit.models.base import build_network
from mnist_lit.models.cnn import CNN, feature_map_sizes
from mnist_lit.models.mlp import MLP
from tests.conftest import compose_train

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


def layer_types(net: nn.Module) -> list[type]:
    return [type(m) for m in net.modules() if not isinstance(m, nn.Sequential) and m is not net]


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


def test_mlp_layers_and_dropout():
    net = MLP(hidden=64, layers=3, dropout=0.2)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    types = layer_types(net)
    assert types.count(nn.Linear) == 4 and types.count(nn.Dropout) == 3


def test_feature_map_sizes_with_two_convolutions_per_block():
    assert feature_map_sizes(2, 3, convs_per_block=2) == [12, 4]
    with pytest.raises(ConfigError, match=r"model.convs_per_block=3 cannot work"):
        feature_map_sizes(3, 3, convs_per_block=3)


def test_presets_compose_and_pass_the_checks():
    for preset, arch in (("cnn_best", "cnn"), ("mlp_best", "mlp")):
        cfg = compose_train(f"experiment={preset}")
        check_config(cfg)
        assert cfg.model.arch == arch and cfg.data.augment == "affine" and cfg.model.name == preset
        assert build_network(cfg.model)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=cnn", "model.convs_per_block=0"], "model.convs_per_block=0 is not allowed"),
        (["model=cnn", "model.convs_per_block=3", "model.blocks=3"], "model.convs_per_block=3 cannot work"),
        (["model=cnn", "model.block_dropout=1.0"], "model.block_dropout=1.0 is not allowed"),
        (["model=cnn", "model.batch_norm=maybe"], "model.batch_norm='maybe' is not allowed: it must be true or false"),
        (["model=cnn", "model.global_pool=1"], "model.global_pool=1 is not allowed"),
        (["model.layers=0"], "model.layers=0 is not allowed"),
        (["model.dropout=-0.1"], "model.dropout=-0.1 is not allowed"),
        (["data.augment=cutout"], "data.augment='cutout' is not allowed"),
    ],
)
def test_bad_option_values_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        check_config(compose_train(*overrides))


def test_the_cnn_best_sweep_searches_the_new_keys_from_the_preset():
    cfg = compose_train("hparams_search=cnn_best_optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.sampler.seed == 42
    assert sweeper.direction == "maximize" and cfg.optimized_metric == "val/acc" and sweeper.n_trials == 40
    assert cfg.model.name == "cnn_best" and cfg.model.batch_norm is True and cfg.trainer.max_epochs == 15
    assert {"model.convs_per_block", "model.block_dropout", "model.global_pool", "data.augment"} <= set(sweeper.params)
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key, default="missing") != "missing", key  # every searched key exists
    check_config(cfg)
