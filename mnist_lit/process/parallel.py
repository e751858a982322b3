"""Running on several cores and processes: torch threads per sweep job, and where DDP can start its processes."""

from __future__ import annotations

import logging
import os

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from mnist_lit.config.resolvers import parallel_jobs, threads_per_job, usable_cores  # noqa: F401  (part of this module's API)
from mnist_lit.errors import ConfigError


def set_threads(threads: int | None) -> None:
    """Limit torch's intra-op threads (the key ``threads``, checked by TrainSettings); None leaves torch's default."""
    if threads is not None:
        torch.set_num_threads(threads)


def setup_parallelism(cfg: DictConfig) -> None:
    """Apply ``cfg.threads``, refuse DDP where it cannot start its processes, quiet DDP's other ranks."""
    check_ddp_launch(cfg, multirun=HydraConfig.get().mode == RunMode.MULTIRUN)
    set_threads(cfg.get("threads"))
    quiet_other_ranks()


def quiet_other_ranks() -> None:
    """On DDP ranks other than 0 keep only warnings (the project's and Lightning's): rank 0 tells the run's story once.

    Lightning gives ranks 1.. their own log file (``train_ddp_process_<rank>.log``, Hydra's job
    name); under SLURM every rank appends to the job's one log, so quieting them matters more there.
    """
    if rank_zero_only.rank > 0:  # from RANK / LOCAL_RANK / SLURM_PROCID, set before the process starts
        for name in ("mnist_lit", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)


def check_ddp_launch(cfg: DictConfig, multirun: bool) -> None:
    """Refuse a DDP run whose extra processes Lightning would start by re-running a local multirun."""
    strategy = OmegaConf.select(cfg, "trainer.strategy")
    name = strategy if isinstance(strategy, str) else OmegaConf.select(cfg, "trainer.strategy._target_") or ""
    # Lightning starts ranks 1.. as `python train.py <same arguments>`: inside a sweep job those
    # arguments are the whole sweep. Under SLURM the ranks are started by srun instead.
    if multirun and "ddp" in str(name).lower() and "SLURM_NTASKS" not in os.environ:
        raise ConfigError(
            f"trainer.strategy={name!r} is not allowed in a local multirun: Lightning would start each extra "
            "process by re-running the whole sweep. Run DDP as a single run (python train.py trainer=ddp ...), "
            "or sweep on a cluster with hydra/launcher=slurm, where SLURM starts one task per device"
        )
