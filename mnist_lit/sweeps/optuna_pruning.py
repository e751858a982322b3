"""Pruning a job of an Optuna sweep (``hydra.sweeper.pruner=median|hyperband``): report every epoch, stop when told.

The sweeper (hydra_plugins/mnist_lit_optuna_sweeper) gives each job its trial; this callback reports
the monitored metric to it after every validation and, when the study's pruner says the trial is
hopeless, stops training at the end of that epoch, as early stopping would, and records the epoch.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig

from mnist_lit.errors import ConfigError

log = logging.getLogger(__name__)


class OptunaPruning(L.Callback):
    """Reports ``monitor`` to an Optuna trial after each validation (step = the epoch, from 1); stops a pruned fit.

    ``trial`` is the sweeper's ``JobTrial`` (``report``, ``should_prune``, ``set_user_attr``, as an Optuna
    ``Trial`` has them). Under DDP rank 0 reports and decides, and every rank stops.
    """

    def __init__(self, trial: Any, monitor: str, pruner: str) -> None:
        self.trial = trial
        self.monitor = monitor
        self.pruner = pruner
        self.pruned_epoch: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        epoch = trainer.current_epoch + 1
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                raise ConfigError(
                    f"optimized_metric={self.monitor} is not a metric the model logs, so it cannot be reported "
                    "for pruning: choose val/acc or val/loss"
                )
            self.trial.report(float(value), step=epoch)
            prune = self.trial.should_prune()
        prune = trainer.strategy.broadcast(prune)
        if prune:
            self.pruned_epoch = epoch
            trainer.should_stop = True
            if trainer.is_global_zero:
                self.trial.set_user_attr("pruned_epoch", epoch)
                log.info(
                    "Pruned by Optuna's %s pruner after epoch %d (trial %d)",
                    self.pruner,
                    epoch,
                    self.trial.number,
                )

    @property
    def reason(self) -> str:
        """Why training stopped, in the words of metrics.json's ``stop_reason``."""
        return f"pruned by Optuna's {self.pruner} pruner after epoch {self.pruned_epoch}"


def pruning_callback(cfg: DictConfig) -> OptunaPruning | None:
    """The pruning callback for this job, when it runs a trial of an ``optuna_study`` sweep that prunes; else None."""
    if not HydraConfig.initialized():
        return None
    sweeper = HydraConfig.get().sweeper
    if not sweeper.get("pruner") or sweeper.get("trial") is None:
        return None
    from hydra_plugins.mnist_lit_optuna_sweeper.study import job_trial

    monitor = cfg.get("optimized_metric")
    if not monitor:
        raise ConfigError(
            f"optimized_metric={monitor} is not allowed with hydra.sweeper.pruner={sweeper.pruner}: the pruner needs "
            "the metric the study optimises, reported every epoch (optimized_metric=val/acc)"
        )
    trial = job_trial(sweeper)
    return OptunaPruning(trial, str(monitor), str(sweeper.pruner)) if trial is not None else None
