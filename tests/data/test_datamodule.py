"""The data module on synthetic IDX files: reading, splitting, normalisation, batching."""

from __future__ import annotations

import torch

from mnist_lit.data.datamodule import MNISTDataModule, split_indices
from mnist_lit.data.mnist import DATASET as MNIST
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
