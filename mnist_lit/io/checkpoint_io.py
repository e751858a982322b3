"""Checkpoints written atomically in their own folder (Lightning's CheckpointIO plugin, set in conf/trainer)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins import TorchCheckpointIO

from mnist_lit.io.atomic import atomic_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoints, written to a temporary file beside the target, fsynced and renamed.

    Lightning's own writer copies a temporary file over the target, so a full disk or a kill during
    the copy leaves a half-written ``last.ckpt`` and the previous good one is gone. Here the target
    is replaced only once the new file is complete on disk.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        """Save ``checkpoint`` to ``path`` atomically (``storage_options`` is not supported, as in Lightning's)."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "wb") as f:
            torch.save(checkpoint, f)
