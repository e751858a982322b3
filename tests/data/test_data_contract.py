"""The data contract: networks built for the data module's images and classes, checkpoints that keep them as plain
values, and runs and checkpoints saved before the contract, which still load as 28x28 grayscale with ten classes."""

from __future__ import annotations

import pytest
import torch
import yaml

from mnist_lit.config.checks import command_config
from mnist_lit.data.dataset import ImageSpec
from mnist_lit.errors import ConfigError
from mnist_lit.evaluation.evaluate import evaluate
from mnist_lit.lit_module import DigitClassifier, load_checkpoint, load_classifier
from mnist_lit.models.base import build_network, count_parameters, flops_per_image

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
    with pytest.raises(ConfigError, match=r"hyper_parameters.data: channels=2 is neither 1 nor 3"):
        load_checkpoint(ckpt)
