"""What the terminal shows while training: Lightning's notices and known warnings silenced, job prefixes in sweeps."""

from __future__ import annotations

import logging
import warnings

# Warnings that say nothing the user can act on.
KNOWN_WARNINGS = (
    # The images are in memory, so DataLoader worker processes would only add start-up and IPC cost.
    r".*does not have many workers",
    # Lightning 2.6's own use of a torch API that newer torch deprecates.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # Metrics are logged once an epoch, so Lightning's per-step logging interval does not matter.
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    # Under DDP: the epoch metrics are computed by torchmetrics, which reduces them across processes itself.
    r"It is recommended to use `self.log\('[^']+', \.\.\., sync_dist=True\)`",
    # logger=csv writes metrics.csv into the run directory, which holds the run's own files by then; only a
    # metrics.csv there is replaced (a resumed run's: it starts again at the resumed epoch).
    r"Experiment logs directory .* exists and is not empty",
    # The run directory guard lets a run into a folder holding checkpoints only where they are its own (a resume).
    r"Checkpoint directory .* exists and is not empty",
)


def quiet_lightning() -> None:
    """Silence Lightning's notices (INFO) and the known warnings; its warnings and errors still show.

    Lightning's console logger, ``lightning.pytorch``, is set to WARNING as Lightning's documentation on
    console logging teaches. That silences its notices: the litlogger tip, ``limit_*_batches=1.0`` "was
    configured so 100% ...", GPU/TPU availability, DDP's "All distributed processes registered",
    "Restoring states from the checkpoint", "`Trainer.fit` stopped". The run's own lines say what matters
    of these: the devices at the start, why training ended at the end. Its "Received SIGTERM" notice is
    silenced too: the command's one line on an interruption (mnist_lit.interrupts) says what was kept.
    What a setting asks for still shows: the reports of ``trainer.profiler``, the layer table of
    ``trainer.enable_model_summary``, the messages of a callback made verbose.
    """
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    for asked_for in ("lightning.pytorch.profilers", "lightning.pytorch.callbacks"):
        logging.getLogger(asked_for).setLevel(logging.INFO)
    for message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
