"""The data module of ``perf=fast``: Lightning fetches several training batches at once."""

from __future__ import annotations

from torch.utils.data import DataLoader

from mnist_lit.data.datamodule import MNISTDataModule
from mnist_lit.lit_module import Batch


class FetchingMNISTDataModule(MNISTDataModule):
    """``MNISTDataModule`` whose training loader yields ``steps_per_fetch`` batches per fetch.

    The batches are gathered at once and split after the transfer: the sampler's permutation is
    the same as with one batch a fetch, so the optimizer sees exactly the same batches.
    """

    def __init__(self, *args, steps_per_fetch: int = 32, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.steps_per_fetch = steps_per_fetch

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_set, self.batch_size * self.steps_per_fetch, shuffle=True)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch | list[Batch]:
        """Normalise; a training fetch becomes the list of its ``batch_size`` optimizer batches."""
        images, labels = super().on_after_batch_transfer(batch, dataloader_idx)
        if self.trainer is not None and self.trainer.training:
            return list(zip(images.split(self.batch_size), labels.split(self.batch_size), strict=True))
        return images, labels
