"""The LightningModule: plain hyperparameters, and label smoothing in the training loss only."""

from __future__ import annotations

import pytest
import torch

from mnist_lit.evaluation.inference import classify
from mnist_lit.lit_module import DigitClassifier
from mnist_lit.training import plain
from tests.conftest import compose_train


def test_module_hyperparameters_are_plain_values():
    cfg = compose_train("model=cnn")
    module = DigitClassifier(model=plain(cfg.model), optimizer=plain(cfg.optimizer))
    assert module.hparams.model["arch"] == "cnn"
    assert module(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    probabilities = classify(module, torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8))
    assert probabilities.shape == (3, 10) and torch.allclose(probabilities.sum(1), torch.ones(3))


def test_label_smoothing_changes_the_training_loss_only():
    smoothing = 0.2
    cfg = compose_train("model=mlp", f"model.label_smoothing={smoothing}")
    module = DigitClassifier(model=plain(cfg.model), optimizer=plain(cfg.optimizer))
    images, labels = torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4, 9])
    with torch.no_grad():
        log_p = torch.log_softmax(module(images), dim=1)
        plain_loss = -log_p[torch.arange(6), labels].mean()
        # the target puts 1 - s on the label and s/10 on every class
        smoothed = (1 - smoothing) * plain_loss - smoothing * log_p.mean(dim=1).mean()
        assert module.shared_step((images, labels), "train").item() == pytest.approx(smoothed.item(), rel=1e-5)
        for stage in ("val", "test"):
            assert module.shared_step((images, labels), stage).item() == pytest.approx(plain_loss.item(), rel=1e-5)
    assert smoothed.item() != pytest.approx(plain_loss.item(), rel=1e-3)
