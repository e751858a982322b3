"""The run directory, checked and claimed before Hydra or Lightning writes anything into it.

``RunDirectoryGuard`` is a Hydra callback (conf/hydra/default.yaml). Its ``on_run_start`` runs before Hydra
creates the run directory; Hydra saves no ``.hydra/`` of its own (``output_subdir: null``) and opens its log file
only when the job first logs, so a run refused by its checks leaves every file as it was.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from mnist_lit.config.resolvers import resumed_run
from mnist_lit.config.schema import resolved
from mnist_lit.errors import ConfigError, UserError, describe, exit_with
from mnist_lit.io.atomic import unwritable_reason, write_text

# What a training run leaves in its directory; any of them means the directory is taken.
RUN_MARKERS = (".hydra", "checkpoints", "metrics.json")
LOCK_FILE = ".lock"  # held by the command writing into a run or sweep directory
# What a job of a sweep leaves in its folder besides Hydra's .hydra/ (written just before the job starts).
JOB_OUTPUTS = ("checkpoints", "metrics.json")
# What a multirun leaves in its sweep directory.
SWEEP_MARKERS = ("multirun.yaml", "summary.md", "summary.csv")


def refuse_unwritable(key: str, directory: Path, shown: str) -> None:
    """A ConfigError naming ``key`` when ``directory`` cannot be created or written to."""
    reason = unwritable_reason(directory)
    if reason:
        raise ConfigError(
            f"{key}={shown} cannot be used: {reason}. Choose a writable place with {key}=... or paths.log_dir=..."
        )


def check_run_dir(run_dir: Path, shown: str, ckpt_path: str | None = None) -> None:
    """``run_dir`` must be writable and hold no other run (it may hold the run that ``ckpt_path`` resumes)."""
    refuse_unwritable("hydra.run.dir", run_dir, shown)
    if not run_dir.is_dir():
        return
    found = [name for name in RUN_MARKERS if (run_dir / name).exists()]
    if found and resumed_run(ckpt_path) != run_dir.resolve():
        raise ConfigError(
            f"hydra.run.dir={shown} already holds another run ({', '.join(found)}), which would be overwritten: "
            f"choose a new directory, or resume that run with ckpt_path={run_dir}/checkpoints/last.ckpt"
        )


def check_sweep_dir(sweep_dir: Path, shown: str) -> None:
    """``sweep_dir`` must be writable and hold no earlier sweep."""
    refuse_unwritable("hydra.sweep.dir", sweep_dir, shown)
    if not sweep_dir.is_dir():
        return
    found = [name for name in SWEEP_MARKERS if (sweep_dir / name).exists()]
    found += sorted(p.name for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())[:3]
    if found:
        raise ConfigError(
            f"hydra.sweep.dir={shown} already holds an earlier sweep ({', '.join(found)}), which would be "
            "overwritten: choose a new directory (the default is a new one per sweep)"
        )


def check_sweeper(config: DictConfig) -> None:
    """The Optuna sweeper's settings (study, storage, search space), checked before the sweep directory is made."""
    from hydra_plugins.mnist_lit_optuna_sweeper.config import SWEEPER_TARGET

    if OmegaConf.select(config, "hydra.sweeper._target_", default=None) == SWEEPER_TARGET:
        from hydra_plugins.mnist_lit_optuna_sweeper.optuna_sweeper import check_multirun

        check_multirun(config)


def check_job_dirs(config: DictConfig, sweep_dir: Path) -> Path:
    """``hydra.sweep.subdir`` gives each job its own folder inside the sweep directory; returns job 0's folder."""
    raw = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
    folders = []
    for num in (0, 1):
        probe = config.copy()
        with open_dict(probe):
            probe.hydra.job.num = num
            probe.hydra.job.id = f"job{num}"
        try:
            subdir = str(OmegaConf.select(probe, "hydra.sweep.subdir"))
        except OmegaConfBaseException as e:
            raise ConfigError(f"hydra.sweep.subdir={raw} cannot be resolved: {describe(e)}") from None
        folder = Path(os.path.normpath(sweep_dir / subdir))
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
def claimed_job_dir(job_dir: Path, sweep_dir: Path, ckpt_path: str | None = None) -> Iterator[None]:
    """While a sweep's job runs: its folder is inside its sweep's, holds no other job's outputs, and is locked."""
    job, sweep = job_dir.resolve(), sweep_dir.resolve()
    if sweep not in job.parents:
        raise ConfigError(f"hydra.sweep.subdir puts this job's folder at {job}, outside hydra.sweep.dir={sweep}")
    lock = lock_directory(job, "hydra.sweep.subdir")
    try:
        found = [name for name in JOB_OUTPUTS if (job / name).exists()]
        if found and resumed_run(ckpt_path) != job:
            raise ConfigError(
                f"hydra.sweep.subdir: this job's folder {job} already holds another job's outputs "
                f"({', '.join(found)}), which would be overwritten: include ${{hydra.job.num}} in hydra.sweep.subdir"
            )
        yield
    finally:
        lock.release()


def fail_closed(checks: Callable[[], None]) -> None:
    """Run a command's checks; however they fail, the command stops before anything is written.

    A user's mistake ends in the one-line ``Error:``; a bug in the checks shows its traceback and ends the
    command too (a Hydra callback's other exceptions would only be warnings, and the run would go on).
    """
    try:
        checks()
    except UserError as e:
        exit_with(e)
    except OmegaConfBaseException as e:
        exit_with(ConfigError(f"{e.full_key or 'the config'} cannot be used: {describe(e)}"))
    except OSError as e:  # a path this system refuses: too long a name, a file where a folder must be, ...
        exit_with(f"{e.filename or 'a path of the settings'} cannot be used: {e.strerror or describe(e)}")
    except Exception:
        traceback.print_exc()
        print("The command was stopped before writing anything.", file=sys.stderr)
        raise SystemExit(1) from None


def lock_directory(directory: Path, key: str) -> FileLock:
    """Hold an exclusive lock on ``directory`` (its ``.lock`` file) until released or the process ends;
    ConfigError if another process holds it. The operating system releases it however the process ends."""
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
    """A job's ``.hydra/`` (config.yaml, hydra.yaml, overrides.yaml), as Hydra saves it, written once the job's
    checks have passed: conf/hydra sets ``output_subdir: null`` so that Hydra writes nothing before them."""
    hydra = HydraConfig.get()
    folder = Path(hydra.runtime.output_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    saved = {
        "config.yaml": cfg,
        "hydra.yaml": OmegaConf.create({"hydra": hydra}),
        "overrides.yaml": hydra.overrides.task,
    }
    for name, node in saved.items():
        write_text(folder / name, OmegaConf.to_yaml(node))


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
    """Checks the run (or sweep) directory, then makes and locks it, before Hydra writes anything; the config is
    checked by the job itself (``mnist_lit.training.train``). A single run refused by its checks leaves nothing:
    the folders the guard made are removed again and the command ends with its one ``Error:`` line.

    The directory is checked again once it is locked: of two commands started at once for the same directory,
    one runs and the other is refused, whichever order their checks ran in.
    """

    def __init__(self) -> None:
        self.lock: FileLock | None = None
        self.made: Path | None = None  # the outermost folder this command made for its run

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if os.environ.get("LOCAL_RANK", "0") != "0":
            return  # a DDP process that Lightning started inside the run that rank 0 has claimed
        fail_closed(lambda: self.claim_run(config))

    def claim_run(self, config: DictConfig) -> None:
        """Check the run directory, then make and lock it."""
        try:
            shown = str(config.hydra.run.dir)
        except OmegaConfBaseException as e:
            resolved(config)  # names the key that hydra.run.dir is made of and that cannot be resolved
            raise ConfigError(f"hydra.run.dir cannot be resolved: {describe(e)}") from None
        run_dir = Path(shown).expanduser().absolute()
        check_run_dir(run_dir, shown, config.get("ckpt_path"))
        self.made = next((p for p in reversed([run_dir, *run_dir.parents]) if not p.exists()), None)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.lock = lock_directory(run_dir, "hydra.run.dir")
        check_run_dir(run_dir, shown, config.get("ckpt_path"))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN or job_return.status != JobStatus.FAILED:
            return  # a sweep records its failed jobs (mnist_lit.sweeps.callbacks)
        error = job_error(job_return)
        if not isinstance(error, UserError):
            return  # a bug: Hydra shows its traceback
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
        """Check the sweeper, the job folders, the settings the jobs share and the sweep directory, then make and
        lock the directory."""
        shown = str(config.hydra.sweep.dir)
        sweep_dir = Path(os.path.normpath(Path(shown).expanduser().absolute()))
        check_sweeper(config)
        first_job = check_job_dirs(config, sweep_dir)
        from mnist_lit.config.checks import check_config  # here: it loads torch, which a refused sweep need not

        check_config(as_job(config, first_job))  # the settings every job shares (each job checks its own)
        check_sweep_dir(sweep_dir, shown)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.lock = lock_directory(sweep_dir, "hydra.sweep.dir")
        check_sweep_dir(sweep_dir, shown)

    def __getstate__(self) -> dict[str, Any]:
        # Launchers pickle Hydra's callbacks for their job processes; a lock belongs to the process that took it.
        return {**self.__dict__, "lock": None}

    def release(self) -> None:
        """Give the lock back (the process ending does the same)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.release()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.release()
