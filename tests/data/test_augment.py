"""Augmentation: per-image transforms of whole batches, seeded, applied to training batches only."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnist_lit.data.augment import AUGMENTATIONS, TTA_TRANSFORMS, build_augmentation, shifted_images, tta_views
from mnist_lit.data.datamodule import MNISTDataModule
from mnist_lit.data.mnist import DATASET as MNIST
from mnist_lit.errors import ConfigError
from tests.conftest import run_cli, synthetic_overrides


def square_digits(n: int) -> torch.Tensor:
    """``n`` identical uint8 images: a filled square off-centre, so any rotation, shift or warp shows."""
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    images[:, 8:20, 6:14] = 255
    return images


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_each_image_gets_its_own_transform(kind):
    images = square_digits(16)
    out = build_augmentation(kind)(images)
    assert out.shape == (16, 28, 28) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 255
    assert not torch.equal(out, images.float())
    distinct = {tuple(out[i].flatten().round().tolist()) for i in range(len(out))}
    assert len(distinct) == 16  # same input image, 16 different outputs: parameters drawn per image


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_a_seed_gives_the_same_augmented_batch(kind):
    images = square_digits(8)
    augment = build_augmentation(kind)
    torch.manual_seed(7)
    first = augment(images)
    torch.manual_seed(7)
    again = augment(images)
    torch.manual_seed(8)
    other = augment(images)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_no_augmentation_and_unknown_names():
    assert build_augmentation(None) is None
    with pytest.raises(ConfigError, match=r"data.augment='rotate' is not allowed: choose null \(none\), affine or"):
        build_augmentation("rotate")


def on_pixel_grid(images: torch.Tensor) -> bool:
    """Whether normalised images are exactly uint8 pixels normalised: no interpolated values."""
    pixels = (images * MNIST.std + MNIST.mean) * 255
    return bool((pixels - pixels.round()).abs().max() < 1e-3)


class RecordingModule(L.LightningModule):
    """Trains a linear model and records whether each stage's batches were untouched uint8 pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        self.seen: dict[str, list[bool]] = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        images, labels = batch
        self.seen["train"].append(on_pixel_grid(images))
        return F.cross_entropy(self.net(images), labels)

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(on_pixel_grid(batch[0]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_only_training_batches_are_augmented(synthetic):
    datamodule = MNISTDataModule(
        data_dir=str(synthetic["data_dir"]),
        checksums=synthetic["checksums"],
        batch_size=32,
        eval_batch_size=50,
        augment="affine",
    )
    module = RecordingModule()
    trainer = L.Trainer(
        max_epochs=1, num_sanity_val_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, datamodule=datamodule)
    assert module.seen["train"] and not any(module.seen["train"])  # every training batch augmented
    assert module.seen["val"] and all(module.seen["val"])  # validation (and the sanity check) untouched


def test_train_cli_with_elastic_augmentation_and_a_bad_name(synthetic, tmp_path):
    # data.augment=affine is trained by the first of the shared ensemble runs (the runs fixture in conftest.py)
    done = run_cli(
        "train.py", *synthetic_overrides(synthetic), f"paths.log_dir={tmp_path}", "data.augment=elastic",
        "trainer.max_epochs=1",
    )  # fmt: skip
    assert "test/acc" in done.stderr + done.stdout
    bad = tmp_path / "bad"
    overrides = [*synthetic_overrides(synthetic), f"hydra.run.dir={bad}", "data.augment=blur"]
    done = run_cli("train.py", *overrides, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "Error: data.augment='blur' is not allowed" in done.stderr
    assert not (bad / "checkpoints").exists() and not (bad / "metrics.json").exists()


def test_tta_views_are_fixed_and_start_with_the_image():
    images = square_digits(3)
    views = tta_views(images)
    assert len(views) == len(TTA_TRANSFORMS)
    assert torch.allclose(views[0], images.float(), atol=1e-3)  # the identity view
    assert all(not torch.allclose(v, images.float(), atol=1) for v in views[1:])
    assert all(torch.equal(a, b) for a, b in zip(views, tta_views(images), strict=True))


def test_shifted_images_are_seeded_and_change_every_image():
    images = square_digits(50)
    shifted = shifted_images(images)
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    assert torch.equal(shifted, shifted_images(images))  # fixed: the same split every time
    assert not torch.equal(shifted, shifted_images(images, seed=1))
    changed = (shifted.float() - images.float()).abs().flatten(1).amax(1) > 0
    assert bool(changed.all())
    ink = (shifted > 127).flatten(1).sum(1).float()
    assert ink.std() > 5  # thinner, thicker and rescaled strokes: not one ink area for all
