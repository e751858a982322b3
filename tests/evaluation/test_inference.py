"""``mnist_lit.evaluation.inference`` with a small checkpoint trained on the synthetic digits: logits normalised with
the checkpoint's own data set, TTA as the mean over the TTA views, the autocast of a mixed precision, and
ensembles averaging their members' logits, each compared with the same computation done by hand.
"""

from __future__ import annotations

import pytest
import torch

from mnist_lit.checkpoints import load_classifier
from mnist_lit.data.augment import TTA_TRANSFORMS, tta_views
from mnist_lit.data.fashion_mnist import DATASET as FASHION
from mnist_lit.data.mnist import DATASET as MNIST
from mnist_lit.evaluation.inference import classify, logits_of, predict_batches
from mnist_lit.lit_module import DigitClassifier
from tests.conftest import MODELS, N_TEST, synthetic_digits, train_checkpoint


@pytest.fixture(scope="module")
def model(synthetic, tmp_path_factory) -> DigitClassifier:
    path = tmp_path_factory.mktemp("inference") / "mlp.ckpt"
    return load_classifier(train_checkpoint(synthetic, path, {**MODELS["mlp"], "dropout": 0.3}, epochs=2))


@pytest.fixture(scope="module")
def synthetic_test_split() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = synthetic_digits(N_TEST, seed=2)  # the synthetic test split
    return torch.from_numpy(images), torch.from_numpy(labels).long()


def by_hand(model: DigitClassifier, images: torch.Tensor, normalize=MNIST.normalize) -> torch.Tensor:
    with torch.no_grad():
        return model(normalize(images)).float()


def test_logits_and_probabilities_are_the_networks_on_normalised_images(model, synthetic_test_split):
    images, labels = synthetic_test_split
    model.train()  # in training mode its dropout would change the numbers: logits_of sets eval mode
    logits = logits_of(model, images)
    assert not model.training
    assert logits.shape == (N_TEST, 10) and logits.dtype == torch.float32 and logits.device.type == "cpu"
    torch.testing.assert_close(logits, by_hand(model, images))
    probs = classify(model, images)
    torch.testing.assert_close(probs, by_hand(model, images).softmax(dim=1))
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(N_TEST))
    assert (probs.argmax(dim=1) == labels).float().mean() > 0.9  # the trained network, fed as in training


def test_tta_logits_are_the_mean_over_the_tta_views(model, synthetic_test_split):
    images = synthetic_test_split[0][:50]
    views = tta_views(images)
    assert len(views) == len(TTA_TRANSFORMS) == 9
    expected = torch.stack([by_hand(model, view) for view in views]).mean(dim=0)
    tta = logits_of(model, images, tta=True)
    torch.testing.assert_close(tta, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(tta, logits_of(model, images), atol=1e-3)  # the views were used, not just the image


def test_a_checkpoints_own_data_set_normalises_its_images(model, synthetic_test_split):
    images = synthetic_test_split[0][:50]
    hparams = dict(model.hparams)
    fashion = DigitClassifier(**{**hparams, "dataset": "fashion_mnist"})
    fashion.load_state_dict(model.state_dict())
    logits = logits_of(fashion, images)
    torch.testing.assert_close(logits, by_hand(fashion, images, FASHION.normalize))
    assert not torch.allclose(logits, by_hand(fashion, images, MNIST.normalize), atol=1e-3)


def test_an_ensemble_averages_its_members_logits_batch_by_batch(model, synthetic_test_split):
    images, labels = synthetic_test_split
    other = DigitClassifier(**dict(model.hparams))  # an untrained member: its logits differ from the trained one's
    batches = [(images[i : i + 64], labels[i : i + 64].to(torch.uint8)) for i in range(0, N_TEST, 64)]
    ensemble = predict_batches([(model, "32-true"), (other, "bf16-mixed")], batches)
    assert torch.equal(ensemble.images, images) and torch.equal(ensemble.labels, labels)
    assert ensemble.labels.dtype == torch.int64
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what Lightning's bf16-mixed applies on the CPU
        other_logits = by_hand(other, images)
    expected = ((by_hand(model, images) + other_logits) / 2).softmax(dim=1)
    torch.testing.assert_close(ensemble.probs, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(other_logits, by_hand(other, images), atol=1e-6)  # bf16 autocast did apply
    single = predict_batches(model, batches)
    torch.testing.assert_close(single.probs, classify(model, images))
