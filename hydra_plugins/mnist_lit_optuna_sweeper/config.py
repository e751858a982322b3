"""The sweeper's settings and its samplers, registered in Hydra's ConfigStore (``hydra/sweeper=optuna_study``).

The stored nodes hold the defaults without their types, so that a wrong value on the command line reaches the
project's own check (``mnist_lit.config.schema.typed``, in ``_sweep.py``) and its one-line error.
"""

# No "from __future__ import annotations" here: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses looks string annotations up.
import dataclasses
from typing import Any

from hydra.core.config_store import ConfigStore

from mnist_lit.config.schema import setting, shown
from mnist_lit.errors import ConfigError

PROVIDER = "mnist_lit_optuna_sweeper"
SWEEPER_TARGET = "hydra_plugins.mnist_lit_optuna_sweeper.optuna_sweeper.OptunaSweeper"
# hydra.sweeper.pruner's names and the Optuna classes they stand for
PRUNERS = {"median": "optuna.pruners.MedianPruner", "hyperband": "optuna.pruners.HyperbandPruner"}
DIRECTIONS = ("minimize", "maximize")
# A study's journal file is <study_name>.journal; Optuna's lock beside it adds 56 bytes more to the name, and a
# file name has at most 255.
STUDY_NAME_BYTES = 128


@dataclasses.dataclass
class OptunaSweeperConf:
    """``hydra.sweeper.*``: what to search, how, and which Optuna study records it."""

    _target_: str = SWEEPER_TARGET
    _recursive_: bool = False  # the sweeper builds the sampler itself, once it has checked it
    sampler: Any = None  # hydra/sweeper/sampler=tpe|random|grid|nsgaii (SAMPLERS below)
    # minimize or maximize what the task function returns (one objective)
    direction: Any = "minimize"
    # null: the task's name (hydra.job.name, e.g. "train")
    study_name: str | None = None
    # Any Optuna storage URL (sqlite:///..., postgresql://...) or the path of an Optuna journal file.
    # null: the journal file <paths.log_dir>/optuna/<study_name>.journal (<cwd>/optuna/... without paths.log_dir)
    storage: str | None = None
    # trials the study holds when it is done, counting those of earlier commands (interrupted ones excepted)
    n_trials: int = setting(20, low=1)
    # trials asked for and launched at once (as many as the launcher runs at once)
    n_jobs: int = setting(1, low=1)
    # the sweep stops when more than this fraction of a batch fails
    max_failure_rate: float = setting(0.0, low=0, high=1)
    # null (no pruning), median or hyperband: the job reports its metric every epoch and may be stopped early
    pruner: str | None = None
    # keyword arguments of the pruner's class (null: its defaults), e.g. {n_startup_trials: 5, n_warmup_steps: 1}
    pruner_args: Any = None
    # the search space: key -> choice(...), range(...), interval(...), tag(log, interval(...)) or a fixed value
    params: dict[str, str] | None = None
    # Set by the sweeper in each job's config (never by hand): the number of the Optuna trial the job runs.
    trial: int | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ConfigError(
                f"hydra.sweeper.direction={shown(self.direction)} is not allowed: choose minimize or maximize "
                "(a study of one objective, the value the task returns)"
            )
        name = self.study_name
        if name is not None and (
            name in ("", ".", "..") or "/" in name or "\\" in name or not name.isprintable()
            or len(name.encode()) > STUDY_NAME_BYTES
        ):  # fmt: skip
            raise ConfigError(
                f"hydra.sweeper.study_name={shown(name)} is not allowed: it names the study's journal file "
                f"(logs/optuna/<study_name>.journal), so it must be one plain file name of at most "
                f"{STUDY_NAME_BYTES} bytes, without / or \\, not . or .."
            )


@dataclasses.dataclass
class SamplerSettings:
    """What every sampler of hydra/sweeper/sampler takes; its other arguments are its class's own."""

    _target_: str = ""
    seed: int | None = setting(None, low=0, high=2**32 - 1)  # null: a new seed each command


# hydra/sweeper/sampler=<name>: an Optuna sampler's class and keyword arguments (null ones keep its defaults).
# https://optuna.readthedocs.io/en/stable/reference/samplers/index.html; the grid sampler tries every
# combination of the search space (choices and stepped ranges only), in random order.
SAMPLERS = {
    "tpe": {"_target_": "optuna.samplers.TPESampler", "seed": None, "n_startup_trials": 10, "n_ei_candidates": 24,
            "multivariate": False},
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": None},
    "grid": {"_target_": "optuna.samplers.GridSampler", "seed": None},
    "nsgaii": {"_target_": "optuna.samplers.NSGAIISampler", "seed": None, "population_size": 50},
}  # fmt: skip

store = ConfigStore.instance()
sweeper = {k: v for k, v in dataclasses.asdict(OptunaSweeperConf()).items() if k != "sampler"}
store.store(group="hydra/sweeper", name="optuna_study", node={"defaults": [{"sampler": "tpe"}], **sweeper},
            provider=PROVIDER)  # fmt: skip
for name, node in SAMPLERS.items():
    store.store(group="hydra/sweeper/sampler", name=name, node=node, provider=PROVIDER)
