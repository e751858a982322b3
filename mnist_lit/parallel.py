"""Running on several cores and processes: torch threads per sweep job, and where DDP can start its processes."""

from __future__ import annotations

import logging
import os

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from mnist_lit.errors import ConfigError


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and SLURM narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parallel_jobs(n_jobs: int | None) -> int:
    """How many sweep jobs run at once for a launcher's ``n_jobs`` (None: one at a time; -1: one per core)."""
    if n_jobs is None:
        return 1
    # joblib's rule for negative values: -1 is every core, -2 every core but one, ...
    return n_jobs if n_jobs > 0 else max(1, usable_cores() + 1 + n_jobs)


def threads_per_job(n_jobs: int | None) -> int | None:
    """Each parallel job's share of the cores; None (torch's default) when jobs run one at a time."""
    if n_jobs is None:
        return None
    return max(1, usable_cores() // parallel_jobs(n_jobs))


# ${threads_per_job:${hydra:launcher.n_jobs}} in conf/train.yaml: the joblib launcher has n_jobs,
# the basic and submitit launchers do not (they give None, so torch keeps its default).
OmegaConf.register_new_resolver("threads_per_job", threads_per_job, replace=True)
OmegaConf.register_new_resolver("parallel_jobs", parallel_jobs, replace=True)


def set_threads(threads: int | None) -> None:
    """Limit torch's intra-op threads; None leaves torch's default (one per core)."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        allowed = "an integer >= 1, or null for torch's default"
        raise ConfigError(f"threads={threads!r} is not allowed: it must be {allowed}")
    torch.set_num_threads(threads)


def setup_parallelism(cfg: DictConfig) -> None:
    """Apply ``cfg.threads``, refuse DDP where it cannot start its processes, quiet DDP's other ranks."""
    check_ddp_launch(cfg, multirun=HydraConfig.get().mode == RunMode.MULTIRUN)
    set_threads(cfg.get("threads"))
    quiet_other_ranks()


def quiet_other_ranks() -> None:
    """On DDP ranks other than 0 keep only the project's warnings: rank 0 tells the run's story once.

    Lightning gives ranks 1.. their own log file (``train_ddp_process_<rank>.log``, Hydra's job
    name); under SLURM every rank appends to the job's one log, so quieting them matters more there.
    """
    if rank_zero_only.rank > 0:  # from RANK / LOCAL_RANK / SLURM_PROCID, set before the process starts
        logging.getLogger("mnist_lit").setLevel(logging.WARNING)


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
