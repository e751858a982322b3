"""The Sweeper class Hydra finds when it scans for plugins; the work (and Optuna) is in ``_sweep.py``."""

from __future__ import annotations

from collections.abc import Callable
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


def check_multirun(config: DictConfig, check_job: Callable[[DictConfig], Any]) -> None:
    """Refuse, with a ConfigError, sweeper settings that cannot work and a search space that gives a job a value
    that ``check_job`` (the config check every job makes) refuses, before anything is written."""
    from hydra_plugins.mnist_lit_optuna_sweeper._sweep import check_space, plan_study

    check_space(config, plan_study(config, list(config.hydra.overrides.task)), check_job)
