"""The run directory, checked and claimed before Hydra or Lightning writes anything into it.

``RunDirectoryGuard`` is a Hydra callback (conf/hydra/default.yaml). Its ``on_run_start`` runs before Hydra
creates the run directory; Hydra saves no ``.hydra/`` of its own (``output_subdir: null``) and opens its log file
only when the job first logs, so a run refused by its checks leaves every file as it was.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnist_lit.config.resolvers import resumed_run
from mnist_lit.config.schema import resolved
from mnist_lit.errors import ConfigError, UserError, describe, exit_with
from mnist_lit.io.atomic import unwritable_reason, write_text

RUN_MARKERS = (".hydra", "checkpoints", "metrics.json")  # what a run leaves: any of them means the folder is taken
JOB_OUTPUTS = ("checkpoints", "metrics.json")  # what a sweep's job leaves besides the .hydra/ it saves first
SWEEP_MARKERS = ("multirun.yaml", "summary.md", "summary.csv")
LOCK_FILE = ".lock"  # held by the command writing into a run or sweep directory
LAST_CHECKPOINT = Path("checkpoints", "last.ckpt")
# Top-level keys that say where or how a run works, not what it trains: runs that differ only in these are one run
# (the loggers record a run; a resume may add or drop one).
NOT_THE_RUN = ("ckpt_path", "paths", "threads", "keep_freed_memory", "evaluate_after_fit", "optimized_metric", "logger")
UNREADABLE = (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException)  # a saved config that cannot be read

log = logging.getLogger(__name__)


def held(key: str, directory: Path, shown: str, markers: tuple[str, ...]) -> list[str]:
    """Which of ``markers`` ``directory`` holds; a ConfigError naming ``key`` if it cannot be created or written to."""
    reason = unwritable_reason(directory)
    if reason:
        raise ConfigError(
            f"{key}={shown} cannot be used: {reason}. Choose a writable place with {key}=... or paths.log_dir=..."
        )
    return [name for name in markers if (directory / name).exists()]


def check_run_dir(run_dir: Path, shown: str, ckpt_path: str | None = None) -> None:
    """``run_dir`` must be writable and hold no other run (it may hold the run that ``ckpt_path`` resumes)."""
    found = held("hydra.run.dir", run_dir, shown, RUN_MARKERS)
    if found and resumed_run(ckpt_path) != run_dir.resolve():
        raise ConfigError(
            f"hydra.run.dir={shown} already holds another run ({', '.join(found)}), which would be overwritten: "
            f"choose a new directory, or resume that run with ckpt_path={run_dir}/checkpoints/last.ckpt"
        )


def run_settings(config: DictConfig) -> dict[str, Any]:
    """What defines a run: its settings as written (interpolations unresolved, so what Hydra gives each job, its
    folder and launcher, stays out), without Hydra's own and those of ``NOT_THE_RUN``."""
    values = OmegaConf.to_container(config, resolve=False)
    return {key: value for key, value in values.items() if key not in ("hydra", *NOT_THE_RUN)}


def holds_run_of(run_dir: Path, config: DictConfig) -> bool:
    """Whether ``run_dir``'s ``.hydra/config.yaml`` (``save_run_config``'s) has the settings of ``config``."""
    try:
        saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    except UNREADABLE:
        return False
    return isinstance(saved, DictConfig) and run_settings(saved) == run_settings(config)


def resolve_last(config: DictConfig) -> None:
    """``ckpt_path=last``: set ``ckpt_path`` to the ``last.ckpt`` of the newest run under ``<paths.log_dir>/runs``
    with these settings (``run_settings``), before the run directory is chosen from it."""
    if config.get("ckpt_path") != "last":
        return
    if config.hydra.mode == RunMode.MULTIRUN:
        raise ConfigError(
            "ckpt_path=last is not allowed in a multirun: run the same command with hydra.sweep.dir=<the sweep's "
            "folder> to go on with its jobs (each resumes from its own last.ckpt; finished jobs are kept)"
        )
    runs = Path(str(config.paths.log_dir)).expanduser().absolute() / "runs"
    found = [ckpt for ckpt in runs.glob(f"**/{LAST_CHECKPOINT}") if holds_run_of(ckpt.parents[1], config)]
    if not found:
        raise ConfigError(
            f"ckpt_path=last found no run to resume: no folder under {runs} holds a {LAST_CHECKPOINT} and a "
            f".hydra/config.yaml with this command's settings (all but {', '.join(NOT_THE_RUN)}). Leave ckpt_path out "
            "to start a new run, or resume a run of other settings with ckpt_path=<run>/checkpoints/last.ckpt"
        )
    config.ckpt_path = str(max(found, key=lambda ckpt: ckpt.stat().st_mtime_ns))


def check_sweep_dir(sweep_dir: Path, shown: str, overrides: list[str] | None = None) -> bool:
    """``sweep_dir`` must be writable and hold no earlier sweep, unless that sweep is this command's: its
    ``multirun.yaml`` (Hydra's) has these ``overrides`` (None: a sweeper that never goes on in place). True: it is."""
    found = held("hydra.sweep.dir", sweep_dir, shown, SWEEP_MARKERS)
    found += sorted(p.parent.name for p in sweep_dir.glob("*/.hydra") if p.is_dir())[:3]
    if not found:
        return False
    try:
        earlier = OmegaConf.select(OmegaConf.load(sweep_dir / "multirun.yaml"), "hydra.overrides.task")
    except UNREADABLE:
        earlier = None
    earlier = OmegaConf.to_container(earlier) if isinstance(earlier, ListConfig) else None
    if overrides is None:
        how = "an Optuna study resumes in a new directory: leave hydra.sweep.dir out"
    elif earlier == overrides:
        return True
    else:
        how = "or go on with that sweep by running its own command again"
        how += f" (its overrides: {' '.join(earlier) or 'none'})" if earlier is not None else ""
    raise ConfigError(
        f"hydra.sweep.dir={shown} already holds an earlier sweep ({', '.join(found)}), which would be "
        f"overwritten: choose a new directory (the default is a new one per sweep), {how}"
    )


def optuna_sweep(config: DictConfig) -> bool:
    """Whether the multirun is the Optuna sweeper's, which resumes its study in a new sweep directory; the same
    command of Hydra's basic sweeper again goes on in its sweep directory (``check_sweep_dir``)."""
    from hydra_plugins.mnist_lit_optuna_sweeper.config import SWEEPER_TARGET

    return OmegaConf.select(config, "hydra.sweeper._target_", default=None) == SWEEPER_TARGET


def check_job_dirs(config: DictConfig, sweep_dir: Path) -> Path:
    """``hydra.sweep.subdir`` gives each job its own folder inside the sweep directory; returns job 0's folder."""
    raw = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
    folders = []
    for num in (0, 1):
        probe = OmegaConf.merge(config, {"hydra": {"job": {"num": num, "id": f"job{num}"}}})
        try:
            folder = Path(os.path.normpath(sweep_dir / str(probe.hydra.sweep.subdir)))
        except OmegaConfBaseException as e:
            raise ConfigError(f"hydra.sweep.subdir={raw} cannot be resolved: {describe(e)}") from None
        if sweep_dir not in folder.parents:
            raise ConfigError(
                f"hydra.sweep.subdir={raw} puts job {num}'s folder at {folder}, outside hydra.sweep.dir={sweep_dir}: "
                "a job's folder must be inside its sweep's (the default is ${hydra.job.num}_${run_name})"
            )
        folders.append(folder)
    if folders[0] == folders[1]:
        raise ConfigError(
            f"hydra.sweep.subdir={raw} gives every job the same folder ({folders[0]}), so jobs would overwrite each "
            "other: include ${hydra.job.num} (the default is ${hydra.job.num}_${run_name})"
        )
    return folders[0]


@contextlib.contextmanager
def claimed_job_dir(job_dir: Path, sweep_dir: Path, cfg: DictConfig) -> Iterator[bool]:
    """While a sweep's job runs: its folder is inside its sweep's, holds no other job's outputs, and is locked.
    Yields whether it holds this job's own outputs (its ``.hydra/config.yaml`` has the job's settings ``cfg``):
    those of the same command run before in this sweep directory, which the job goes on with."""
    job, sweep = job_dir.resolve(), sweep_dir.resolve()
    if sweep not in job.parents:  # an override's value in hydra.sweep.subdir can lead out of it
        raise ConfigError(f"hydra.sweep.subdir puts this job's folder at {job}, outside hydra.sweep.dir={sweep}")
    lock = lock_directory(job, "hydra.sweep.subdir")
    try:
        found = [name for name in JOB_OUTPUTS if (job / name).exists()]
        own = bool(found) and holds_run_of(job, cfg)
        if found and not own and resumed_run(cfg.get("ckpt_path")) != job:
            raise ConfigError(
                f"hydra.sweep.subdir: this job's folder {job} already holds another job's outputs "
                f"({', '.join(found)}) of other settings, which would be overwritten: include ${{hydra.job.num}} in "
                "hydra.sweep.subdir, or choose a new hydra.sweep.dir"
            )
        yield own
    finally:
        lock.release()


def fail_closed(checks: Callable[[], None]) -> None:
    """Run a command's checks; however they fail, the command stops before anything is written: a user's mistake
    with its one ``Error:`` line, a bug with its traceback (a Hydra callback's exceptions are only warnings)."""
    try:
        checks()
    except UserError as e:
        exit_with(e)
    except OmegaConfBaseException as e:
        exit_with(f"{e.full_key or 'the config'} cannot be used: {describe(e)}")
    except OSError as e:  # a path this system refuses: too long a path, a folder it may not read, ...
        exit_with(f"{e.filename or 'a path of the settings'} cannot be used: {e.strerror or describe(e)}")
    except Exception:
        traceback.print_exc()
        print("The command was stopped before writing anything.", file=sys.stderr)
        raise SystemExit(1) from None


def lock_directory(directory: Path, key: str) -> FileLock:
    """Hold an exclusive lock on ``directory`` (its ``.lock`` file) until released or the process ends, however it
    ends; ConfigError if another process holds it."""
    lock = FileLock(str(directory / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(
            f"{key}={directory} is in use: another command is writing into it right now. "
            f"Wait for it to end, or choose another directory with {key}=..."
        ) from None
    return lock


def as_job(config: DictConfig, output_dir: Path) -> DictConfig:
    """A multirun's config as its job in ``output_dir`` will see it, for checks before Hydra runs the job: each
    ``${hydra:key}`` read from the config's own ``hydra`` node, the node Hydra gives the job (HydraConfig)."""
    text = re.sub(r"\$\{hydra:([^}]*)\}", r"${oc.select:hydra.\1,null}", OmegaConf.to_yaml(config))
    job = OmegaConf.create(text)
    job.hydra.runtime.output_dir = str(output_dir)
    job.hydra.job.num = 0
    return job


def save_run_config(cfg: DictConfig) -> None:
    """A job's ``.hydra/`` (config.yaml, hydra.yaml, overrides.yaml) as Hydra saves it, written once the job's checks
    have passed (conf/hydra sets ``output_subdir: null``: Hydra writes nothing before them)."""
    hydra = HydraConfig.get()
    saved = {"config.yaml": cfg, "hydra.yaml": {"hydra": hydra}, "overrides.yaml": hydra.overrides.task}
    for name, node in saved.items():
        write_text(Path(hydra.runtime.output_dir, ".hydra", name), OmegaConf.to_yaml(node))


def job_error(job_return: JobReturn) -> BaseException | None:
    """The exception a failed job raised, or the UserError a refused job of a grid sweep returned (mnist_lit.command);
    None for a job that ran. Hydra's own line about a failed job is left out: the caller reports it."""
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            value = job_return.return_value  # a failed job's return_value raises its exception
        except Exception as e:
            return e
    return value if isinstance(value, UserError) else None


class RunDirectoryGuard(Callback):
    """Checks the run (or sweep) directory, then makes and locks it, before Hydra writes anything; the job checks
    the config (``mnist_lit.training.train``). A single run refused by its checks leaves nothing: the folders the
    guard made are removed again and the command ends with its one ``Error:`` line."""

    def __init__(self) -> None:
        self.lock: FileLock | None = None
        self.made: Path | None = None  # the outermost folder this command made for its run

    def claim(self, directory: Path, key: str, check: Callable[[], bool | None]) -> bool | None:
        """``check()`` ``directory``, make and lock it, and ``check()`` it again under the lock: of two commands
        started at once for one directory, one runs and the other is refused, whichever checked first."""
        check()
        self.made = next((p for p in reversed([directory, *directory.parents]) if not p.exists()), None)
        directory.mkdir(parents=True, exist_ok=True)
        self.lock = lock_directory(directory, key)
        return check()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        fail_closed(lambda: self.claim_run(config))

    def claim_run(self, config: DictConfig) -> None:
        """Find the run that ``ckpt_path=last`` resumes; check the run directory, then make and lock it."""
        resolve_last(config)
        if os.environ.get("LOCAL_RANK", "0") != "0":
            return  # a DDP process that Lightning started inside the run that rank 0 has claimed
        try:
            shown = str(config.hydra.run.dir)
        except OmegaConfBaseException as e:
            resolved(config)  # names the key that hydra.run.dir is made of and that cannot be resolved
            raise ConfigError(f"hydra.run.dir cannot be resolved: {describe(e)}") from None
        run_dir = Path(shown).expanduser().absolute()
        self.claim(run_dir, "hydra.run.dir", lambda: check_run_dir(run_dir, shown, config.get("ckpt_path")))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        error = job_error(job_return) if config.hydra.mode != RunMode.MULTIRUN else None
        if not isinstance(error, UserError):
            return  # a bug shows Hydra's traceback; a sweep records its failed jobs (mnist_lit.sweeps.callbacks)
        self.release()
        run_dir = Path(config.hydra.runtime.output_dir)
        if self.made is not None and not any((run_dir / name).exists() for name in JOB_OUTPUTS):
            shutil.rmtree(run_dir, ignore_errors=True)  # made by this command, holding nothing but its lock and log
            for folder in run_dir.parents:  # and the empty folders above it that this command made
                if folder == self.made.parent or any(folder.iterdir()):
                    break
                folder.rmdir()
        exit_with(error)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        fail_closed(lambda: self.claim_sweep(config))

    def claim_sweep(self, config: DictConfig) -> None:
        """Check the job folders, the settings the jobs share, the Optuna sweeper's settings and search space (each
        value its jobs can get) and the sweep directory, then make and lock the directory."""
        resolve_last(config)  # refused: a sweep goes on through its own directory
        shown = str(config.hydra.sweep.dir)
        sweep_dir = Path(os.path.normpath(Path(shown).expanduser().absolute()))
        first_job = check_job_dirs(config, sweep_dir)
        from mnist_lit.config.checks import check_config  # here: it loads torch, which a refused sweep need not

        check_config(as_job(config, first_job))  # the settings every job shares (each job checks its own)
        optuna = optuna_sweep(config)
        if optuna:
            from hydra_plugins.mnist_lit_optuna_sweeper.optuna_sweeper import check_multirun

            check_multirun(config, lambda job: check_config(as_job(job, first_job)))
        overrides = None if optuna else OmegaConf.to_container(config.hydra.overrides.task)
        if self.claim(sweep_dir, "hydra.sweep.dir", lambda: check_sweep_dir(sweep_dir, shown, overrides)):
            log.info("Going on with the sweep in %s: finished jobs are kept, the others resume or start", sweep_dir)

    def __getstate__(self) -> dict[str, Any]:
        # Launchers pickle Hydra's callbacks for their job processes; a lock belongs to the process that took it.
        return {**self.__dict__, "lock": None}

    def release(self, *args: Any, **kwargs: Any) -> None:
        """Give the lock back (the process ending does the same); Hydra calls it as a run or sweep ends."""
        if self.lock is not None:
            self.lock.release()

    on_run_end = on_multirun_end = release
