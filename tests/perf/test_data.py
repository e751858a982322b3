"""``mnist_lit.perf.data``: ``FetchingMNISTDataModule`` hands a real Trainer's training step the very batches, in the
very order, of the plain ``MNISTDataModule`` for the same seed, grouped ``steps_per_fetch`` at a time, and its
evaluation batches as they are.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnist_lit.data.datamodule import MNISTDataModule
from mnist_lit.display.terminal import quiet_lightning
from mnist_lit.perf.data import FetchingMNISTDataModule

BATCH, STEPS_PER_FETCH, EPOCHS = 32, 5, 2  # 400 training images: 13 batches an epoch, the last of 16 images


class BatchRecorder(L.LightningModule):
    """A small real network that keeps what each training and validation step was given."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(28 * 28, 10)
        self.train_batches: list = []
        self.val_batches: list = []

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        self.train_batches.append(batch)
        groups = batch if isinstance(batch, list) else [batch]
        return sum(F.cross_entropy(self.net(x.flatten(1)), y) for x, y in groups)

    def validation_step(self, batch, batch_idx: int) -> None:
        self.val_batches.append(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(datamodule: MNISTDataModule, seed: int = 7) -> BatchRecorder:
    quiet_lightning()
    L.seed_everything(seed, verbose=False)
    module = BatchRecorder()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=EPOCHS, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    return module


@pytest.fixture(scope="module")
def recorded(synthetic) -> dict[str, BatchRecorder]:
    settings = {"data_dir": str(synthetic["data_dir"]), "checksums": synthetic["checksums"],
                "batch_size": BATCH, "eval_batch_size": 100}  # fmt: skip
    return {
        "plain": fit(MNISTDataModule(**settings)),
        "fetching": fit(FetchingMNISTDataModule(**settings, steps_per_fetch=STEPS_PER_FETCH)),
    }


def test_the_training_step_gets_the_plain_modules_batches_in_groups(recorded):
    plain, fetching = recorded["plain"].train_batches, recorded["fetching"].train_batches
    assert len(plain) == EPOCHS * 13
    assert all(isinstance(fetch, list) for fetch in fetching)
    assert [len(fetch) for fetch in fetching] == [5, 5, 3] * EPOCHS  # fetches of 160 images, the last of 80
    grouped = [batch for fetch in fetching for batch in fetch]
    assert len(grouped) == len(plain)
    for (images, labels), (plain_images, plain_labels) in zip(grouped, plain, strict=True):
        assert images.dtype == torch.float32 and images.shape[1:] == (1, 28, 28)  # normalised, as the plain ones
        assert torch.equal(images, plain_images) and torch.equal(labels, plain_labels)
    assert [len(labels) for _, labels in grouped[:13]] == [BATCH] * 12 + [16]
    # each epoch is a new permutation of the same 400 images, for both
    first, second = (torch.cat([labels for _, labels in plain[e * 13 : (e + 1) * 13]]) for e in range(EPOCHS))
    assert not torch.equal(first, second) and torch.equal(first.sort().values, second.sort().values)


def test_a_different_seed_gives_different_batches(synthetic, recorded):
    other = fit(
        MNISTDataModule(data_dir=str(synthetic["data_dir"]), checksums=synthetic["checksums"], batch_size=BATCH),
        seed=8,
    )
    # the comparison above is not trivially true: the order does depend on the seed
    assert not torch.equal(other.train_batches[0][1], recorded["plain"].train_batches[0][1])


def test_validation_batches_are_not_grouped(recorded):
    plain, fetching = recorded["plain"].val_batches, recorded["fetching"].val_batches
    assert len(fetching) == len(plain) == EPOCHS  # 100 validation images, one batch of 100 an epoch
    for (images, labels), (plain_images, plain_labels) in zip(fetching, plain, strict=True):
        assert images.shape == (100, 1, 28, 28)
        assert torch.equal(images, plain_images) and torch.equal(labels, plain_labels)
