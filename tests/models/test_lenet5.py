"""LeNet-5: the paper's layer sizes and parameters, built by model=lenet5, trained and resumed like the others."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnist_lit.config.checks import check_config
from mnist_lit.errors import ConfigError
from mnist_lit.models.base import build_network, count_parameters, network_shape
from mnist_lit.models.lenet5 import LeNet5
from tests.conftest import compose_train, synthetic_overrides, train_in_process


def test_layers_have_the_papers_sizes():
    net = LeNet5()
    x = torch.zeros(2, 1, 28, 28)
    sizes = []
    for layer in net.features:
        x = layer(x)
        if isinstance(layer, (nn.ZeroPad2d, nn.Conv2d, nn.AvgPool2d)):
            sizes.append(tuple(x.shape[1:]))
    # input 32x32, C1 6@28x28, S2 6@14x14, C3 16@10x10, S4 16@5x5, C5 120@1x1
    assert sizes == [(1, 32, 32), (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120, 1, 1)]
    assert [m.out_features for m in net.classifier if isinstance(m, nn.Linear)] == [84, 10]
    assert count_parameters(net) == 156 + 2_416 + 48_120 + 10_164 + 850  # C1, C3, C5, F6, output
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_model_lenet5_builds_it_and_has_no_settings_of_its_own():
    cfg = compose_train("model=lenet5")
    check_config(cfg)
    assert isinstance(build_network(cfg.model), LeNet5) and cfg.run_name == "lenet5_s42"
    assert network_shape(cfg.model) == {"num_classes": 10}
    with pytest.raises(ConfigError, match="model.filters is not a setting of model"):
        check_config(compose_train("model=lenet5", "+model.filters=8"))


def test_lenet5_trains_tests_and_resumes(synthetic, tmp_path):
    run = tmp_path / "run"
    metrics = train_in_process(run, *synthetic_overrides(synthetic), "model=lenet5", "trainer.max_epochs=2")
    assert metrics["epochs"] == 2 and metrics["test/acc"] > 0.5 and metrics["parameters"] == 61_706
    resumed = train_in_process(
        run,
        *synthetic_overrides(synthetic),
        "model=lenet5",
        "trainer.max_epochs=3",
        f"ckpt_path={run}/checkpoints/last.ckpt",
    )
    assert resumed["epochs"] == 3 and [r["epoch"] for r in resumed["history"]][-1] == 3
    with pytest.raises(ConfigError, match="holds a model.arch='lenet5' checkpoint, but model.arch='mlp'"):
        check_config(compose_train(*synthetic_overrides(synthetic), f"ckpt_path={run}/checkpoints/last.ckpt"))
