"""The data module on synthetic IDX files: reading, splitting (and k-fold cross-validation's folds), normalisation,
batching; the data contract: networks
built for the data module's images and classes, checkpoints that keep them as plain values, and runs and
checkpoints saved before the contract, which still load as 28x28 grayscale with ten classes."""

from __future__ import annotations

import pytest
import torch
import yaml

from mnist_lit.checkpoints import load_checkpoint, load_classifier
from mnist_lit.config.checks import command_config
from mnist_lit.data.datamodule import MNISTDataModule, fold_indices, split_indices
from mnist_lit.data.dataset import ImageSpec
from mnist_lit.data.mnist import DATASET as MNIST
from mnist_lit.errors import ConfigError
from mnist_lit.evaluation.evaluate import evaluate
from mnist_lit.lit_module import DigitClassifier
from mnist_lit.models.base import build_network, count_parameters, flops_per_image
from tests.conftest import N_TEST, N_TRAIN


def make_dm(synthetic: dict, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(data_dir=str(synthetic["data_dir"]), checksums=synthetic["checksums"], **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def test_split_sizes_disjoint_and_test_apart(synthetic):
    dm = make_dm(synthetic, val_fraction=0.2)
    assert len(dm.train_set) == N_TRAIN * 0.8 and len(dm.val_set) == N_TRAIN * 0.2
    assert len(dm.test_set) == N_TEST
    train_idx, val_idx = split_indices(N_TRAIN, 0.2, 42)
    assert set(train_idx.tolist()).isdisjoint(val_idx.tolist())
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(N_TRAIN))
    # The split's images are the official training images at those indices, never test images.
    from torchvision.datasets import MNIST

    official = MNIST(synthetic["data_dir"], train=True)
    assert torch.equal(dm.val_set.images, official.data[val_idx].unsqueeze(1))  # (N, C, H, W), one channel
    assert torch.equal(dm.train_set.labels, official.targets[train_idx])


def test_split_is_deterministic_and_seeded(synthetic):
    a, b = make_dm(synthetic, split_seed=7), make_dm(synthetic, split_seed=7)
    c = make_dm(synthetic, split_seed=8)
    assert torch.equal(a.val_set.images, b.val_set.images)
    assert not torch.equal(a.val_set.images, c.val_set.images)


def test_folds_partition_the_pool_stratified_by_class_and_seeded(synthetic):
    pool, test = make_dm(synthetic).read()
    folds = [fold_indices(pool.labels, 3, fold, 42) for fold in range(3)]
    vals = [val for _, val in folds]
    assert sorted(torch.cat(vals).tolist()) == list(range(N_TRAIN))  # disjoint, together the whole pool
    for train, val in folds:
        assert sorted(torch.cat([train, val]).tolist()) == list(range(N_TRAIN))
    per_class = torch.stack([torch.bincount(pool.labels[val], minlength=10) for val in vals])
    assert (per_class.max(dim=0).values - per_class.min(dim=0).values).max() <= 1
    assert max(map(len, vals)) - min(map(len, vals)) <= 1
    assert torch.equal(fold_indices(pool.labels, 3, 1, 42)[1], vals[1])
    assert not torch.equal(fold_indices(pool.labels, 3, 1, 7)[1], vals[1])
    # The data module validates on its fold and trains on the others; the test set stays apart.
    dm = make_dm(synthetic, folds=3, fold=1)
    assert torch.equal(dm.val_set.images, pool.images[vals[1]]) and torch.equal(
        dm.train_set.labels, pool.labels[folds[1][0]]
    )
    assert torch.equal(dm.test_set.images, test.images)


@pytest.mark.parametrize(
    "folds, fold, expected",
    [
        (1, 0, r"cv.folds=1 \(data.folds\) is not allowed: k-fold cross-validation needs an integer >= 2"),
        (3.0, 0, r"cv.folds=3.0 \(data.folds\) is not allowed"),
        (3, 3, r"cv.fold=3 \(data.fold\) is not allowed: with cv.folds=3 it must be in 0..2"),
        (3, -1, r"cv.fold=-1 \(data.fold\) is not allowed"),
    ],
)
def test_fold_settings_that_cannot_work_are_refused(synthetic, folds, fold, expected):
    with pytest.raises(ConfigError, match=expected):
        MNISTDataModule(data_dir=str(synthetic["data_dir"]), folds=folds, fold=fold)


def test_more_folds_than_a_class_has_images_are_refused(synthetic):
    with pytest.raises(
        ConfigError,
        match=r"cv.folds=51 \(data.folds\) is not allowed: class '0' has only 50 training images.*cv.folds=50 or fewer",
    ):
        make_dm(synthetic, folds=51)


def test_batches_are_normalised_uint8_gathered(synthetic):
    dm = make_dm(synthetic, batch_size=16)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (16, 1, 28, 28) and labels.shape == (16,)
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    assert x.dtype == torch.float32 and x.shape == (16, 1, 28, 28)
    expected = (images.float() / 255 - MNIST.mean) / MNIST.std
    torch.testing.assert_close(x, expected)
    assert len(dm.train_dataloader()) == -(-400 // 16)
    assert len(dm.val_dataloader()) == -(-100 // dm.eval_batch_size)


RGB32 = ImageSpec(32, 3, ("cat", "dog", "fox"), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))

# conf/data/mnist.yaml as runs saved it before the data modules had a base class: the IDX data module under its
# first name, the keys it had then.
EARLIER_DATA = """
_target_: mnist_lit.data.datamodule.MNISTDataModule
dataset: mnist
data_dir: {data_dir}
batch_size: 32
eval_batch_size: 100
val_fraction: 0.2
split_seed: 42
num_workers: 0
pin_memory: false
on_device: false
mirrors:
- http://127.0.0.1:9/
checksums: {checksums}
augment: null
"""


@pytest.mark.parametrize(
    "model, layers",
    [
        ({"arch": "mlp", "hidden": 8}, lambda net: net[1].in_features == 3 * 32 * 32),
        ({"arch": "cnn", "filters": 4, "dense": 8}, lambda net: net.features[0].in_channels == 3),
        ({"_target_": "mnist_lit.models.lenet5.LeNet5"}, lambda net: net.features[1].in_channels == 3),
    ],
)
def test_networks_take_their_input_and_classes_from_the_spec(model, layers):
    classifier = DigitClassifier(model=model, optimizer={"_target_": "torch.optim.Adam"}, data=RGB32.as_dict())
    assert layers(classifier.net)
    assert classifier(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    assert classifier.hparams.data == RGB32.as_dict() and classifier.spec == RGB32
    assert flops_per_image(classifier.net, RGB32.input_shape) > 0


@pytest.mark.parametrize("size", [16, 28, 40])
def test_lenet5_pads_small_images_to_32_and_flattens_large_ones(size):
    net = build_network({"_target_": "mnist_lit.models.lenet5.LeNet5"}, (1, size, size), 4)
    assert net(torch.zeros(2, 1, size, size)).shape == (2, 4)
    assert net.features[0](torch.zeros(1, 1, size, size)).shape[-1] == max(32, size)
    if size == 28:
        assert count_parameters(net) == 61_706 - 6 * 85  # the paper's network, four outputs instead of ten


def test_a_cnn_too_deep_for_small_images_is_refused_naming_the_size():
    with pytest.raises(ConfigError, match="cannot work on 8x8 input"):
        build_network({"arch": "cnn"}, (1, 8, 8), 10)


def test_normalisation_is_per_channel():
    images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    x = RGB32.normalize(images)
    expected = torch.tensor([(1 - m) / s for m, s in zip(RGB32.mean, RGB32.std, strict=True)])
    torch.testing.assert_close(x[0, :, 0, 0], expected)


def test_runs_and_checkpoints_of_the_earlier_layout_still_load(run_copy, synthetic):
    """A run directory whose config names ``MNISTDataModule`` and whose checkpoint has no ``data`` hyper-parameter
    (as saved before the data contract): evaluated as 28x28 grayscale images of ten classes."""
    config_file = run_copy / ".hydra" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    earlier = EARLIER_DATA.format(data_dir=synthetic["data_dir"], checksums=dict(synthetic["checksums"]))
    config["data"] = yaml.safe_load(earlier)
    config_file.write_text(yaml.safe_dump(config))
    ckpt = run_copy / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(ckpt, weights_only=True)
    del checkpoint["hyper_parameters"]["data"]
    torch.save(checkpoint, ckpt)

    classifier = load_classifier(ckpt, checkpoint=load_checkpoint(ckpt))
    assert classifier.spec.input_shape == (1, 28, 28) and classifier.spec.num_classes == 10
    summary = evaluate(command_config("eval", run_dir=str(run_copy), tensorboard=False))
    metrics = yaml.safe_load((run_copy / "metrics.json").read_text())
    assert summary["accuracy"] == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_a_checkpoint_with_a_broken_data_spec_is_refused(run_copy):
    ckpt = run_copy / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["hyper_parameters"]["data"]["channels"] = 2
    torch.save(checkpoint, ckpt)
    with pytest.raises(ConfigError, match=r"hyper_parameters.*channels=2 is neither 1 nor 3"):
        load_checkpoint(ckpt)
