"""The sweeper's config and its samplers, registered in Hydra's ConfigStore (``hydra/sweeper=optuna_study``)."""

# No "from __future__ import annotations" here: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses looks string annotations up; and OmegaConf reads these types.
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

PROVIDER = "mnist_lit_optuna_sweeper"
SWEEPER_TARGET = "hydra_plugins.mnist_lit_optuna_sweeper.optuna_sweeper.OptunaSweeper"
# hydra.sweeper.pruner's names and the Optuna classes they stand for
PRUNERS = {"median": "optuna.pruners.MedianPruner", "hyperband": "optuna.pruners.HyperbandPruner"}


@dataclass
class SamplerConfig:
    """An Optuna sampler: its class and keyword arguments (null ones keep the sampler's default)."""

    _target_: str = MISSING


@dataclass
class TPESamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.TPESampler.html"""

    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False


@dataclass
class RandomSamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.RandomSampler.html"""

    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class GridSamplerConfig(SamplerConfig):
    """Every combination of the search space (discrete choices and stepped ranges only), in random order."""

    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True  # the search space is given when the sweep starts
    seed: int | None = None


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.NSGAIISampler.html"""

    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: int | None = None
    population_size: int = 50


@dataclass
class OptunaSweeperConf:
    """``hydra.sweeper.*``: what to search, how, and which Optuna study records it."""

    _target_: str = SWEEPER_TARGET
    _recursive_: bool = False  # the sweeper builds the sampler itself, once it has checked it
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING
    # minimize or maximize what the task function returns
    direction: str = "minimize"
    # null: the task's name (hydra.job.name, e.g. "train")
    study_name: str | None = None
    # Any Optuna storage URL (sqlite:///..., postgresql://...) or the path of an Optuna journal file.
    # null: the journal file <paths.log_dir>/optuna/<study_name>.journal (<cwd>/optuna/... without paths.log_dir)
    storage: str | None = None
    # trials the study holds when it is done, counting those of earlier commands (interrupted ones excepted)
    n_trials: int = 20
    # trials asked for and launched at once (as many as the launcher runs at once)
    n_jobs: int = 1
    # the sweep stops when more than this fraction of a batch fails
    max_failure_rate: float = 0.0
    # null (no pruning), median or hyperband: the job reports its metric every epoch and may be stopped early
    pruner: str | None = None
    # keyword arguments of the pruner's class (null: its defaults), e.g. {n_startup_trials: 5, n_warmup_steps: 1}
    pruner_args: Any = None
    # the search space: key -> choice(...), range(...), interval(...), tag(log, interval(...)) or a fixed value
    params: dict[str, str] | None = None
    # Set by the sweeper in each job's config (never by hand): the number of the Optuna trial the job runs.
    trial: int | None = None


store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="optuna_study", node=OptunaSweeperConf, provider=PROVIDER)
for name, node in (
    ("tpe", TPESamplerConfig),
    ("random", RandomSamplerConfig),
    ("grid", GridSamplerConfig),
    ("nsgaii", NSGAIISamplerConfig),
):
    store.store(group="hydra/sweeper/sampler", name=name, node=node, provider=PROVIDER)
