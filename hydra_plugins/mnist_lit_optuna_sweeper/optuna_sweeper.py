"""The Sweeper class Hydra finds when it scans for plugins; the work (and Optuna) is in ``_sweep.py``."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """Asks an Optuna study for trials, runs them as jobs through the configured launcher and tells it the results."""

    def __init__(self, **settings: Any) -> None:
        # Imported here, not at the top: Hydra imports this module at every start-up, sweeping or not.
        from hydra_plugins.mnist_lit_optuna_sweeper._sweep import StudySweep

        self.sweep_impl = StudySweep(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweep_impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        self.sweep_impl.sweep(arguments)


def check_multirun(config: DictConfig) -> None:
    """Refuse, with a ConfigError, sweeper settings that cannot work, before anything is written."""
    from hydra_plugins.mnist_lit_optuna_sweeper._sweep import plan_study

    plan_study(config, list(config.hydra.overrides.task))
