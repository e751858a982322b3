"""Small real checkpoints, trained in-process for a few epochs on the synthetic digits (seconds each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from mnist_lit.data.datamodule import MNISTDataModule
from mnist_lit.display.terminal import quiet_lightning
from mnist_lit.lit_module import DigitClassifier

# The architectures a checkpoint can hold, small: the MLP, the presentation's CNN (channels-last, as
# conf/model/cnn.yaml trains it) and cnn_best's layout (two convolutions per block, batch norm).
MODELS: dict[str, dict[str, Any]] = {
    "mlp": {"arch": "mlp", "hidden": 32, "name": "mlp_h32"},
    "cnn": {"arch": "cnn", "filters": 8, "dense": 32, "dropout": 0.5, "channels_last": True, "name": "cnn_f8"},
    "cnn_bn": {
        "arch": "cnn",
        "filters": 8,
        "dense": 32,
        "convs_per_block": 2,
        "batch_norm": True,
        "dropout": 0.4,
        "channels_last": True,
        "name": "cnn_best_f8",
    },
}


def train_checkpoint(synthetic: dict, path: Path, model: dict[str, Any], epochs: int = 4, seed: int = 0) -> Path:
    """Train ``model`` for ``epochs`` on the synthetic data and save the checkpoint at ``path`` as training does."""
    quiet_lightning()
    L.seed_everything(seed, verbose=False)
    datamodule = MNISTDataModule(
        data_dir=str(synthetic["data_dir"]), checksums=synthetic["checksums"], batch_size=32, eval_batch_size=100
    )
    module = DigitClassifier(model=model, optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 3e-3})
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)
    trainer.save_checkpoint(path)
    return path
