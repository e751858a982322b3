"""Where a study lives and how a job reaches its trial: shared by the sweeper and its jobs.

Hydra imports this module when it scans for plugins, so Optuna is imported inside the functions.

A job of an ``optuna_study`` sweep finds in its own Hydra config (``HydraConfig.get().sweeper``)
the storage, the study name and the number of the trial it runs; ``job_trial`` reopens that trial
(a ``JobTrial``), so that the job can report a metric every epoch and ask whether the trial should
be pruned. A job that is pruned records the epoch as the trial's ``pruned_epoch`` user attribute,
ends normally, and the sweeper tells the study that the trial was pruned.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mnist_lit_optuna_sweeper.config import PRUNERS, SWEEPER_TARGET
from mnist_lit.errors import ConfigError

if TYPE_CHECKING:
    import optuna

JOURNAL_SUFFIX = ".journal"
SEARCH_SPACE_ATTR = "search_space"  # the study's user attribute recording its search space
ERROR_ATTR = "error"  # a failed trial's user attribute: its job's error (interrupted trials have none)
PRUNED_ATTR = "pruned_epoch"  # a pruned trial's user attribute: the last epoch it ran


def resolve_storage(storage: str | None, log_dir: str | None, study_name: str) -> str:
    """The storage a study uses: a URL as given, or an absolute journal file path (null: the default file)."""
    if storage is None:
        base = Path(log_dir) if log_dir else Path.cwd()
        return str((base / "optuna" / f"{study_name}{JOURNAL_SUFFIX}").absolute())
    if "://" in storage:
        return storage
    return str(Path(storage).expanduser().absolute())


def unopenable(storage: str, why: str) -> ConfigError:
    """The error for a storage Optuna cannot open."""
    return ConfigError(
        f"hydra.sweeper.storage={storage} cannot be opened: {why}. Give an Optuna storage URL "
        "(sqlite:///<file>.db, postgresql://..., mysql://...) or the path of a journal file in a writable folder"
    )


def open_storage(storage: str, create: bool = True) -> optuna.storages.BaseStorage | None:
    """The Optuna storage at ``storage`` (a URL or a journal file); None for a missing journal file unless ``create``.

    A journal file (Optuna's JournalFileBackend) is the default: it only appends, under a lock made
    by creating a symbolic link, which is atomic on network file systems (NFS) where the fcntl locks
    that SQLite relies on are not; so commands on several machines can share one study file.
    """
    import optuna

    if "://" in storage:
        try:
            return optuna.storages.RDBStorage(storage)
        except Exception as e:
            lines = str(e).strip().splitlines()
            raise unopenable(storage, f"{type(e).__name__}: {lines[0] if lines else ''}") from e
    path = Path(storage)
    if path.is_dir():
        raise unopenable(storage, "it is a folder")
    if not path.exists():
        existing = path.parent
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise unopenable(storage, f"{existing} is not a writable folder")
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not os.access(path, os.R_OK | os.W_OK):
        raise unopenable(storage, "the file cannot be read and written")
    else:
        check_journal(path)
    try:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    except Exception as e:
        raise unopenable(storage, f"{type(e).__name__}: {e}") from e


def check_journal(path: Path) -> None:
    """``path`` as Optuna's journal files are, or a ConfigError naming it (the file is left as it is): each line
    one JSON operation, the last one whole. Read under the journal's own lock, which every writer holds while it
    appends, so that a line being written is not taken for a cut one."""
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))
    try:
        lock.acquire()
    except OSError as e:
        raise unopenable(str(path), f"its lock file cannot be made ({e.strerror})") from None
    try:
        lines = path.read_bytes().splitlines(keepends=True)
    finally:
        lock.release()
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not line.endswith(b"\n") or not isinstance(entry, dict) or "op_code" not in entry:
            what = "is cut short" if not line.endswith(b"\n") else "is not an entry of an Optuna journal"
            raise ConfigError(
                f"hydra.sweeper.storage={path} is not an Optuna journal file that can be used: its line {number} "
                f"{what}. The file is left as it is: move it aside (or remove a cut last line), or give the study "
                "another file with hydra.sweeper.storage=<file> or hydra.sweeper.study_name=<name>"
            )


def study_exists(storage: optuna.storages.BaseStorage, study_name: str) -> bool:
    """Whether ``storage`` holds a study named ``study_name``."""
    import optuna

    return study_name in optuna.get_all_study_names(storage)


def make_pruner(name: str | None, pruner_args: Any) -> optuna.pruners.BasePruner:
    """The pruner ``hydra.sweeper.pruner`` names, built with ``hydra.sweeper.pruner_args`` (null: none), those
    checked against the pruner's signature."""
    import optuna
    from hydra.utils import instantiate

    from mnist_lit.config.schema import built_or_refused, check_target, plain

    args = plain(pruner_args)
    if args is not None and not isinstance(args, dict):
        raise ConfigError(
            f"hydra.sweeper.pruner_args={args} is not allowed: give the pruner's keyword arguments, "
            "e.g. hydra.sweeper.pruner_args='{n_startup_trials: 5}', or null"
        )
    if name is None:
        if args:
            raise ConfigError(
                f"hydra.sweeper.pruner_args={args} is not allowed without a pruner: set hydra.sweeper.pruner="
                f"{'|'.join(PRUNERS)}"
            )
        return optuna.pruners.NopPruner()
    if name not in PRUNERS:
        allowed_names = " or ".join(PRUNERS)
        raise ConfigError(f"hydra.sweeper.pruner={name} is not allowed: choose null (no pruning), {allowed_names}")
    node = {"_target_": PRUNERS[name], **(args or {})}
    check_target(node, "hydra.sweeper.pruner_args")
    return built_or_refused("hydra.sweeper.pruner_args", PRUNERS[name], lambda: instantiate(node))


class JobTrial:
    """The trial a job runs, reached through the storage's public methods from the job's own process: what
    ``optuna.trial.Trial``'s report, should_prune and set_user_attr do with a trial of this process's asking.
    (Not a dataclass: Hydra's plugin scan runs this module before it is in sys.modules.)"""

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage, trial_id: int, number: int) -> None:
        self.study, self.storage, self.trial_id, self.number = study, storage, trial_id, number

    def report(self, value: float, step: int) -> None:
        """The metric at ``step`` (an epoch from 1), kept for the pruner; a step reported before keeps its value."""
        if step not in self.storage.get_trial(self.trial_id).intermediate_values:
            self.storage.set_trial_intermediate_value(self.trial_id, step, float(value))

    def should_prune(self) -> bool:
        """What the study's pruner says of the trial's values so far."""
        return self.study.pruner.prune(self.study, self.storage.get_trial(self.trial_id))

    def set_user_attr(self, key: str, value: Any) -> None:
        self.storage.set_trial_user_attr(self.trial_id, key, value)


def job_trial(sweeper: DictConfig) -> JobTrial | None:
    """The trial this job runs (None outside an ``optuna_study`` sweep), with the sweep's pruner.

    ``sweeper`` is the job's ``HydraConfig.get().sweeper``; the sweeper set its ``storage``,
    ``study_name`` and ``trial`` in the job's overrides. The sweeper asked this trial (Study.ask) in its own
    process, and Optuna gives another process no Trial of an existing trial, so the job uses the storage.
    """
    import optuna

    number = OmegaConf.select(sweeper, "trial", default=None)
    if number is None or OmegaConf.select(sweeper, "_target_", default=None) != SWEEPER_TARGET:
        return None
    storage = open_storage(str(sweeper.storage))
    pruner = make_pruner(sweeper.pruner, sweeper.pruner_args)
    # The sampler is the sweeper's business: the job only reports, so a plain one does.
    study = optuna.load_study(
        study_name=str(sweeper.study_name), storage=storage, pruner=pruner, sampler=optuna.samplers.RandomSampler()
    )
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)
    return JobTrial(study, storage, trial_id, number)
