"""``mnist_lit.data.dataset``: the data sets found among the package's modules, ``load_dataset`` giving the one a
module declares (the folder torchvision reads, its normalisation) and refusing any other name with a ConfigError.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.datasets
import yaml

from mnist_lit.data import fashion_mnist, mnist
from mnist_lit.data.dataset import dataset_names, load_dataset
from mnist_lit.errors import ConfigError
from tests.conftest import N_TEST, N_TRAIN, ROOT, synthetic_digits, write_synthetic_mnist


def test_dataset_names_are_the_modules_that_declare_a_data_set():
    names = dataset_names()
    assert {"mnist", "fashion_mnist"} <= set(names) and names == sorted(names)
    assert not {"datamodule", "augment", "acquire", "dataset"} & set(names)  # modules without a DATASET
    # each has its conf/data file, which chooses it by that name, and every conf/data file of the IDX data module
    # chooses one of them (the others, image_folder and csv, read the user's own files)
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "conf" / "data").glob("*.yaml")}
    chosen = {stem: data["dataset"] for stem, data in configs.items() if "dataset" in data}
    assert chosen == {name: name for name in names}
    assert {stem for stem in configs if stem not in chosen} == {"image_folder", "csv"}


@pytest.mark.parametrize(
    ("name", "module"), [("mnist", mnist), ("fashion_mnist", fashion_mnist)], ids=["mnist", "fashion"]
)
def test_load_dataset_gives_the_declared_data_set_whose_folder_torchvision_reads(tmp_path, name, module):
    dataset = load_dataset(name)
    assert dataset is module.DATASET
    assert len(dataset.classes) == 10 and len(set(dataset.classes)) == 10
    assert dataset.raw_dir(tmp_path) == tmp_path / dataset.name / "raw"
    write_synthetic_mnist(tmp_path, dataset=dataset)
    test = getattr(torchvision.datasets, dataset.name)(root=str(tmp_path), train=False)
    train = getattr(torchvision.datasets, dataset.name)(root=str(tmp_path), train=True)
    images, labels = synthetic_digits(N_TEST, seed=2)
    assert len(train) == N_TRAIN
    assert torch.equal(test.data, torch.from_numpy(images)) and torch.equal(
        test.targets, torch.from_numpy(labels).long()
    )


@pytest.mark.parametrize("name", ["kmnist", "MNIST", "augment", "mnist.DATASET", ""])
def test_an_unknown_data_set_is_refused_naming_the_value_and_the_choices(name):
    with pytest.raises(ConfigError) as refused:
        load_dataset(name)
    assert str(refused.value) == f"data.dataset={name!r} is not allowed: choose one of fashion_mnist, mnist"
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_normalize_scales_pixels_with_the_data_sets_own_mean_and_std(name):
    dataset = load_dataset(name)
    images = torch.from_numpy(synthetic_digits(4, seed=3)[0])
    images[0, 0, :3] = torch.tensor([0, 128, 255], dtype=torch.uint8)
    out = dataset.normalize(images)
    assert out.shape == (4, 1, 28, 28) and out.dtype == torch.float32
    expected = (images.numpy().astype(np.float64) / 255.0 - dataset.mean) / dataset.std
    np.testing.assert_allclose(out[:, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert out[0, 0, 0, 0].item() == pytest.approx(-dataset.mean / dataset.std, abs=1e-5)
    assert images.dtype == torch.uint8 and images[0, 0, 2] == 255  # the input is left as it was
