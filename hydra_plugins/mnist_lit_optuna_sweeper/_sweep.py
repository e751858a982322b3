"""The work behind ``hydra/sweeper=optuna_study``: check the settings, open the study, ask, launch, tell.

Hydra's plugin scan skips modules whose names start with ``_``, so Optuna is imported only here,
when a sweep starts.

A study lives in its storage, not in the command: a command asks the study for trials until it
holds ``n_trials`` of them (earlier commands' included), runs them as jobs through whatever launcher
is configured, and tells the study each job's result. Each job finds its trial through three
overrides of its Hydra config, ``hydra.sweeper.storage``, ``hydra.sweeper.study_name`` and
``hydra.sweeper.trial`` (the trial's number), which work the same for jobs run in this process
(basic launcher), in worker processes (joblib) or on other machines (submitit); see ``study.py``.

A cross-validation (``cv=kfold``, which sweeps ``cv.fold``) is not searched: each trial runs as one job
per fold, all in the same batch, and the study is told the mean of their results.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, IntervalSweep, Override, RangeSweep, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException, HydraException
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.mnist_lit_optuna_sweeper.config import OptunaSweeperConf, SamplerSettings
from hydra_plugins.mnist_lit_optuna_sweeper.study import (
    ERROR_ATTR,
    SEARCH_SPACE_ATTR,
    make_pruner,
    open_storage,
    resolve_storage,
    study_exists,
)
from mnist_lit.command import composition_error
from mnist_lit.config.schema import built_or_refused, check_target, plain, quietly, typed
from mnist_lit.config.settings import FOLD_KEY
from mnist_lit.errors import ConfigError, OutputError, UserError, exit_with
from mnist_lit.interrupts import explain
from mnist_lit.io.atomic import out_of_space, write_text
from mnist_lit.io.run_dir import job_error

log = logging.getLogger(__name__)
SAMPLER_CHOICES = "hydra/sweeper/sampler=tpe|random|grid|nsgaii"


@dataclass
class StudyPlan:
    """Everything a sweep needs, checked: the study's identity, its search space, sampler and pruner."""

    study_name: str
    storage: str
    direction: str
    distributions: dict[str, BaseDistribution]
    fixed: list[str]  # overrides every trial gets as they are
    sampler: optuna.samplers.BaseSampler
    pruner: optuna.pruners.BasePruner
    n_trials: int
    n_jobs: int
    max_failure_rate: float
    folds: tuple[Any, ...] = ()  # the values of cv.fold each trial runs a job with (none: one job a trial)


def refuse(key: str, value: Any, what: str) -> ConfigError:
    """``hydra.sweeper.<key>=<value> ...`` as the one-line error the entry points print."""
    return ConfigError(f"hydra.sweeper.{key}={value} {what}")


def build_sampler(node: DictConfig, distributions: dict[str, BaseDistribution]) -> optuna.samplers.BaseSampler:
    """The configured Optuna sampler, its settings checked against its class (the grid sampler gets the grid)."""
    settings = {k: v for k, v in plain(node).items() if v is not None}  # null keys keep the sampler's defaults
    target = settings.get("_target_")
    try:
        with quietly():  # Hydra logs its own account of a failed import
            sampler_class = get_class(str(target))
    except (ImportError, ValueError, HydraException):
        sampler_class = None
    if not isinstance(sampler_class, type) or not issubclass(sampler_class, optuna.samplers.BaseSampler):
        raise refuse("sampler._target_", target, f"is not an Optuna sampler: choose one with {SAMPLER_CHOICES}")
    typed(settings, SamplerSettings, "hydra.sweeper.sampler", open_keys=True)
    check_target(settings, "hydra.sweeper.sampler")
    if issubclass(sampler_class, optuna.samplers.GridSampler):
        settings["search_space"] = grid_space(distributions)
    return built_or_refused("hydra.sweeper.sampler", str(target), lambda: instantiate(settings))


SPACE_FORMS = "choice(a, b, ...), range(start, stop[, step]), interval(low, high) or tag(log, interval(low, high))"


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of a ``choice``, ``range`` or ``interval`` sweep; ConfigError for any other."""
    value = override.value()
    tags = set(getattr(value, "tags", ())) - ({"log"} if override.is_interval_sweep() else set())
    try:
        if isinstance(value, Glob):
            raise ValueError("list a group's options with choice(...), not glob")
        if tags:
            raise ValueError(f"tag {', '.join(sorted(tags))} is not one it reads: only log, of an interval")
        if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
            return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
        if override.is_range_sweep():
            assert isinstance(value, RangeSweep)
            start, stop, step = value.start, value.stop, value.step
            count = math.ceil((stop - start) / step - 1e-9) if step else 0  # Optuna's high is included, stop is not
            if count < 1:
                raise ValueError("its step is 0" if not step else "the range holds no value")
            low, high = sorted((start, start + (count - 1) * step))
            if any(isinstance(x, float) for x in (start, stop, step)):
                return FloatDistribution(float(low), float(high), step=float(abs(step)))
            return IntDistribution(int(low), int(high), step=int(abs(step)))
        assert isinstance(value, IntervalSweep)  # Hydra reads an interval's ends as floats
        return FloatDistribution(value.start, value.end, log="log" in value.tags)
    except (ValueError, ArithmeticError) as e:  # Optuna's own conditions: low <= high, low > 0 for log
        raise ConfigError(
            f"{override.input_line} is not allowed in an Optuna search ({str(e).rstrip('.')}): give {SPACE_FORMS}"
        ) from None


def key_exists(config: DictConfig, key: str) -> bool:
    """Whether an override of ``key`` changes something the composed config has (a key or a config group)."""
    missing = object()
    if OmegaConf.select(config, key, default=missing) is not missing:
        return True
    return key in (OmegaConf.select(config, "hydra.runtime.choices") or {})


def search_space(
    config: DictConfig, params: dict[str, str], arguments: list[str]
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """(distributions of the swept keys, fixed overrides) from hydra.sweeper.params and the command line."""
    lines = [f"{k}={v}" for k, v in params.items()] + list(arguments)
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except HydraException as e:
        raise ConfigError(f"hydra.sweeper.params cannot be read: {str(e).splitlines()[0]}") from e
    by_key: dict[str, Override] = {}
    for override in parsed:
        by_key[override.get_key_element()] = override  # the command line wins over the preset
    distributions: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for key, override in by_key.items():
        changes = not (override.is_add() or override.is_force_add() or override.is_delete())
        plain = changes and not override.is_hydra_override() and "/" not in override.key_or_group
        if plain and not key_exists(config, override.key_or_group):
            raise ConfigError(
                f"{override.input_line} is not allowed: {override.key_or_group} is not a key of the config "
                f"(python train.py --cfg job lists them): check its spelling, or write +{override.input_line} "
                "to add a new key"
            )
        if override.is_sweep_override():
            distributions[key] = distribution(override)
        else:
            value = override.get_value_element_as_str()
            fixed.append(override.input_line if override.is_delete() else f"{key}={value}")
    return distributions, fixed


def grid_space(distributions: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    """The grid sampler's lists of values (choices and stepped ranges only)."""
    grid: dict[str, list[Any]] = {}
    for key, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif isinstance(dist, (IntDistribution, FloatDistribution)) and dist.step is not None:
            count = int(round((dist.high - dist.low) / dist.step)) + 1
            grid[key] = [dist.low + i * dist.step for i in range(count)]
        else:
            raise ConfigError(
                f"{key} searched over the interval {dist.low} to {dist.high} is not allowed with "
                "hydra/sweeper/sampler=grid: a grid needs choice(...) or range(...) values; use the tpe or random "
                "sampler for intervals"
            )
    return grid


def encoded_space(distributions: dict[str, BaseDistribution]) -> dict[str, Any]:
    """The search space as JSON values, as the study records it."""
    return {key: json.loads(distribution_to_json(dist)) for key, dist in sorted(distributions.items())}


def check_existing_study(plan: StudyPlan, storage: Any) -> None:
    """A study of that name in that storage must have the same direction and search space."""
    if not study_exists(storage, plan.study_name):
        return
    study = optuna.load_study(study_name=plan.study_name, storage=storage)
    there = [d.name.lower() for d in study.directions]
    shown = f"hydra.sweeper.study_name={plan.study_name}"
    if there != [plan.direction]:
        raise ConfigError(
            f"{shown} already exists in {plan.storage} to {'/'.join(there)}, not to {plan.direction}: keep "
            f"hydra.sweeper.direction={'/'.join(there)}, or start another study with "
            "hydra.sweeper.study_name=<new name>"
        )
    recorded = study.user_attrs.get(SEARCH_SPACE_ATTR)
    wanted = encoded_space(plan.distributions)
    if recorded is not None and recorded != wanted:
        differ = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
        raise ConfigError(
            f"{shown} already exists in {plan.storage} with another search space (it differs in "
            f"{', '.join(differ)}): sweep the same keys and values to resume it, or start another study with "
            "hydra.sweeper.study_name=<new name>"
        )


def plan_study(config: DictConfig, arguments: list[str], create: bool = False) -> StudyPlan:
    """Check every sweeper setting against ``config`` (ConfigError on the first that cannot work); the plan.

    With ``create=False`` (the check before anything is written) a journal file that does not exist
    yet is not created.
    """
    sweeper = typed(config.hydra.sweeper, OptunaSweeperConf, "hydra.sweeper")
    pruner = make_pruner(sweeper.pruner, sweeper.pruner_args)
    distributions, fixed = search_space(config, sweeper.params or {}, arguments)
    folds = tuple(grid_space({FOLD_KEY: distributions.pop(FOLD_KEY)})[FOLD_KEY]) if FOLD_KEY in distributions else ()
    if folds and sweeper.pruner is not None:
        raise refuse(
            "pruner", sweeper.pruner, f"is not allowed with cross-validation ({FOLD_KEY} swept): a trial's folds "
            "would report one curve between them. Give hydra.sweeper.pruner=null",
        )  # fmt: skip
    sampler = build_sampler(config.hydra.sweeper.sampler, distributions)
    n_trials = sweeper.n_trials
    if isinstance(sampler, optuna.samplers.GridSampler):
        n_trials = min(n_trials, math.prod(len(v) for v in grid_space(distributions).values()))
    study_name = sweeper.study_name or config.hydra.job.name
    storage_url = resolve_storage(sweeper.storage, OmegaConf.select(config, "paths.log_dir"), study_name)
    plan = StudyPlan(
        study_name=str(study_name),
        storage=storage_url,
        direction=sweeper.direction,
        distributions=distributions,
        fixed=fixed,
        sampler=sampler,
        pruner=pruner,
        n_trials=n_trials,
        n_jobs=sweeper.n_jobs,
        max_failure_rate=float(sweeper.max_failure_rate),
        folds=folds,
    )
    storage = open_storage(storage_url, create=create)
    if storage is not None:
        check_existing_study(plan, storage)
    return plan


def space_values(distributions: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Jobs' sampled values that between them hold every choice and both ends of every range of the space."""
    ends = {
        key: list(d.choices) if isinstance(d, CategoricalDistribution) else [d.low, d.high]
        for key, d in distributions.items()
    }
    count = max((len(v) for v in ends.values()), default=0)
    return [{key: values[i % len(values)] for key, values in ends.items()} for i in range(count)]


def check_space(config: DictConfig, plan: StudyPlan, check_job: Callable[[DictConfig], Any]) -> None:
    """Every value the search space can give a job, checked as the job's own config before the first trial: the
    job's config composed as the launcher composes it, then ``check_job`` (the project's config check)."""
    from hydra import compose

    def refused(values: dict[str, Any]) -> ConfigError | None:
        overrides = [*config.hydra.overrides.hydra, *plan.fixed, *(f"{k}={v}" for k, v in values.items())]
        try:
            check_job(compose(str(config.hydra.job.config_name), overrides, return_hydra_config=True))
        except CompactHydraException as e:  # a config group has no such option, a key none such
            return composition_error(e)
        except HydraException as e:
            return ConfigError(str(e).strip().splitlines()[0])
        except ConfigError as e:
            return e
        return None

    for values in space_values(plan.distributions):
        error = refused(values)
        if error is None:
            continue
        for key, value in values.items() if len(values) > 1 else ():  # the value refused on its own, if one is
            alone = refused({key: value})
            if alone is not None:
                values, error = {key: value}, alone
                break
        given = " ".join(f"{k}={v}" for k, v in values.items())
        raise ConfigError(f"the search space gives a job {given}, which is refused: {error}")


def counts(trial: FrozenTrial) -> bool:
    """Whether ``trial`` counts towards n_trials: finished, pruned, running, or failed as a job (not interrupted)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    return trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs


def quote(value: str) -> str:
    """``value`` as a quoted override value (paths may hold characters the override grammar reads)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def told(study: optuna.Study, trial: optuna.trial.Trial | int, **outcome: Any) -> None:
    """``study.tell(trial, **outcome)``. With the grid sampler, ask-and-tell raises RuntimeError once the grid's
    last point is told (Optuna's documentation of GridSampler: it calls ``Study.stop``, which works only inside
    ``optimize``); the trial is stored all the same, and the sweep stops at its n_trials (the grid's size)."""
    try:
        study.tell(trial, **outcome)
    except RuntimeError:
        sampler = study.sampler
        if not (isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)):
            raise


class StudySweep:
    """One command's part of a study: asks for its trials, launches them in batches, tells their outcome."""

    def __init__(self, **settings: Any) -> None:
        # The settings are read from config.hydra.sweeper in setup, where the whole config is at hand
        # (the task's name, paths.log_dir) for the default study name and storage.
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        """The study's trials up to n_trials; a user's error, and a full disk under the study's journal, end the
        command in one ``Error:`` line (a job's error does when it stops the sweep)."""
        assert self.config is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep's own lines say what Optuna's would
        plan: StudyPlan | None = None
        try:
            plan = plan_study(self.config, arguments, create=True)
            self.run_study(plan)
        except UserError as e:
            exit_with(e)
        except OSError as e:
            full = out_of_space(e)
            if full is None or plan is None or (full.filename is None and "://" in plan.storage):
                raise
            exit_with(
                OutputError(
                    f"could not write {full.filename or plan.storage}: {full.strerror} (disk full or file size "
                    "limit). Free some space and run the same command again: it resumes the study"
                )
            )

    def run_study(self, plan: StudyPlan) -> None:
        """Open (or resume) the study, run its trials in batches until it holds n_trials, write its best."""
        study = self.open_study(plan, open_storage(plan.storage, create=True))
        self.fail_abandoned(study)
        done = sum(counts(t) for t in study.get_trials(deepcopy=False))
        log.info(
            "Study %s in %s: %d of %d trials there, %d to run. Sampler: %s, pruner: %s, direction: %s",
            plan.study_name, plan.storage, done, plan.n_trials, max(0, plan.n_trials - done),
            type(plan.sampler).__name__, type(plan.pruner).__name__, plan.direction,
        )  # fmt: skip
        while True:
            trials = self.ask(study, plan)
            if not trials:
                break
            self.run_batch(study, plan, trials)
        self.write_results(study)

    def open_study(self, plan: StudyPlan, storage: Any) -> optuna.Study:
        """Create the study, or load it when it exists (then reseed the sampler: see below)."""
        try:
            study = optuna.create_study(
                study_name=plan.study_name, storage=storage, sampler=plan.sampler, pruner=plan.pruner,
                direction=plan.direction,
            )  # fmt: skip
            study.set_user_attr(SEARCH_SPACE_ATTR, encoded_space(plan.distributions))
            return study
        except optuna.exceptions.DuplicatedStudyError:
            pass
        check_existing_study(plan, storage)  # again: another command may have created it since the check
        # A seeded sampler would repeat the samples of the command that started the study (or of another
        # command sharing it); the study's history still guides it.
        plan.sampler.reseed_rng()
        study = optuna.load_study(study_name=plan.study_name, storage=storage, sampler=plan.sampler, pruner=plan.pruner)
        if SEARCH_SPACE_ATTR not in study.user_attrs:
            study.set_user_attr(SEARCH_SPACE_ATTR, encoded_space(plan.distributions))
        log.info("Resuming study %s: its finished trials are kept", plan.study_name)
        return study

    @staticmethod
    def fail_abandoned(study: optuna.Study) -> None:
        """Mark failed the running trials of commands on this machine that no longer run (killed, crashed)."""
        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = trial.user_attrs.get("sweeper")
            if owner and owner.get("host") == host and not alive(int(owner.get("pid", 0))):
                told(study, trial.number, state=TrialState.FAIL, skip_if_finished=True)
                log.warning(
                    "Trial %d: its command (process %s) ended without finishing it: failed", trial.number, owner["pid"]
                )

    def ask(self, study: optuna.Study, plan: StudyPlan) -> list[optuna.trial.Trial]:
        """The next batch of trials, none when the study holds n_trials (another command's running ones included)."""
        held = sum(counts(t) for t in study.get_trials(deepcopy=False))
        wanted = min(plan.n_jobs, plan.n_trials - held)
        trials = []
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "sweep_dir": str(self.config.hydra.sweep.dir)}
        for _ in range(max(0, wanted)):
            trial = study.ask(fixed_distributions=plan.distributions)
            # Trial numbers are given out one at a time by the storage: of commands asking at once, the
            # trials numbered beyond n_trials counting ones are the surplus, whoever asked first.
            before = sum(counts(t) for t in study.get_trials(deepcopy=False) if t.number < trial.number)
            if before >= plan.n_trials:
                trial.set_user_attr("not_run", f"the study already held n_trials={plan.n_trials} trials")
                told(study, trial, state=TrialState.FAIL)
                break
            trial.set_user_attr("sweeper", owner)
            trials.append(trial)
        return trials

    def overrides(self, plan: StudyPlan, trial: optuna.trial.Trial) -> list[str]:
        """The job's overrides: the trial's values, the fixed ones, and where the job finds its trial."""
        values = [f"{key}={trial.params[key]}" for key in plan.distributions]
        where = [
            f"hydra.sweeper.storage={quote(plan.storage)}",
            f"hydra.sweeper.study_name={quote(plan.study_name)}",
            f"hydra.sweeper.trial={trial.number}",
        ]
        return values + plan.fixed + where

    def run_batch(self, study: optuna.Study, plan: StudyPlan, trials: list[optuna.trial.Trial]) -> None:
        """Launch one batch (a job per trial, or per trial and fold) and tell the study how each trial's jobs ended;
        an interrupted batch's trials are failed."""
        folds = [[f"{FOLD_KEY}={fold}"] for fold in plan.folds] or [[]]
        overrides = [self.overrides(plan, t) + fold for t in trials for fold in folds]
        for trial in trials:
            shown = " ".join(self.overrides(plan, trial)[: len(plan.distributions)])
            log.info("Trial %d: %s%s", trial.number, shown, f" ({len(folds)} folds)" if plan.folds else "")
        try:
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
        except BaseException:
            # Ctrl-C, SIGTERM, a launcher error: the trials did not end; the next command runs others instead.
            started = self.started_jobs()
            for trial in trials:
                if trial.number in started:
                    trial.set_user_attr("job_dir", started[trial.number])
                told(study, trial, state=TrialState.FAIL, skip_if_finished=True)
            # Joins the command's one line on Ctrl-C or SIGTERM (mnist_lit.interrupts); an error shows its own.
            explain(
                f"trial {', '.join(str(t.number) for t in trials)} marked failed in the study: "
                "the same command again resumes it"
            )
            raise
        self.job_idx += len(returns)
        failures = []
        for i, trial in enumerate(trials):
            error = self.tell(study, trial, self.one_result(returns[i * len(folds) : (i + 1) * len(folds)]))
            if error is not None:
                failures.append(error)
        if failures and len(failures) / len(trials) > plan.max_failure_rate:
            stop = (
                f"{len(failures)} of {len(trials)} trials failed, more than hydra.sweeper.max_failure_rate="
                f"{plan.max_failure_rate} allows, and the sweep stopped"
            )
            bug = next((e for e in failures if not isinstance(e, UserError)), None)
            if bug is not None:  # a job's own error: its traceback
                log.error("%s", stop)
                raise bug
            raise ConfigError(f"{stop}: {failures[0]}")

    def started_jobs(self) -> dict[int, str]:
        """{trial number: job directory} of the jobs this sweep has started (each saves its Hydra config)."""
        assert self.config is not None
        started = {}
        for saved in Path(str(self.config.hydra.sweep.dir)).glob("*/.hydra/hydra.yaml"):
            try:
                number = OmegaConf.select(OmegaConf.load(saved), "hydra.sweeper.trial")
            except Exception:  # a file being written as the sweep stops: that job is left unnamed
                continue
            if isinstance(number, int):
                started[number] = str(saved.parent.parent)
        return started

    @staticmethod
    def one_result(returns: list[JobReturn]) -> JobReturn:
        """A trial's jobs (one per fold) as one: the first that failed or returned no number, else the first with
        the mean of their returns as its own."""
        values = []
        for ret in returns:
            if len(returns) == 1 or ret.status != JobStatus.COMPLETED:
                return ret
            try:
                values.append(float(ret.return_value))
            except (TypeError, ValueError):
                return ret
        mean = copy.copy(returns[0])
        mean.return_value = sum(values) / len(values)
        return mean

    @staticmethod
    def tell(study: optuna.Study, trial: optuna.trial.Trial, ret: JobReturn) -> BaseException | None:
        """Tell the study how the job ended (complete, pruned or failed); the job's error, if it raised."""
        output_dir = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
        if output_dir:  # where later summaries find the job's files
            trial.set_user_attr("job_dir", str(output_dir))
        e = job_error(ret) if ret.status != JobStatus.COMPLETED else None
        if e is not None:
            trial.set_user_attr(ERROR_ATTR, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            told(study, trial, state=TrialState.FAIL)
            log.warning("Trial %d failed: %s: %s", trial.number, type(e).__name__, e)
            return e
        frozen = study.get_trials(deepcopy=False)[trial.number]
        if "pruned_epoch" in frozen.user_attrs:  # set by the job's pruning callback (study.py)
            told(study, trial, state=TrialState.PRUNED)
            log.info("Trial %d pruned after epoch %s", trial.number, frozen.user_attrs["pruned_epoch"])
            return None
        value = ret.return_value
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            trial.set_user_attr(ERROR_ATTR, f"the job returned {ret.return_value!r}, not a finite number")
            told(study, trial, state=TrialState.FAIL)
            log.warning("Trial %d failed: the job returned %r, not a finite number", trial.number, ret.return_value)
            return ConfigError(
                f"trial {trial.number}: the job returned {ret.return_value!r}, not a finite number to optimise "
                "(optimized_metric names it: val/acc or val/loss)"
            )
        told(study, trial, values=value)
        return None

    def write_results(self, study: optuna.Study) -> None:
        """optimization_results.yaml in the sweep directory: the study's best trial so far."""
        assert self.config is not None
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            log.warning("No trial of study %s has completed: no best trial", study.study_name)
            return
        best = study.best_trial
        results = {"name": "optuna", "study_name": study.study_name, "best_trial": best.number,
                   "best_params": best.params, "best_value": best.value}  # fmt: skip
        log.info("Best trial of study %s: %d, value %s, %s", study.study_name, best.number, best.value, best.params)
        write_text(Path(str(self.config.hydra.sweep.dir)) / "optimization_results.yaml", OmegaConf.to_yaml(results))
