"""Hydra callbacks: a multirun's summary, kept up to date as its jobs end (configured in conf/hydra/default.yaml)."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_lit.errors import UserError, exit_with, report
from mnist_lit.interrupts import when_interrupted
from mnist_lit.io.atomic import write_text
from mnist_lit.io.run_dir import job_error, optuna_sweep
from mnist_lit.sweeps.summary import (
    ERROR_FILE,
    Job,
    describe,
    differing_keys,
    fold_groups,
    fold_verdict,
    label,
    write_summary,
)

log = logging.getLogger(__name__)
# Hydra's own sweeper, the grid of the command line's values: it raises a failed job's exception once its batch is
# done, a traceback that would end the sweep. A job refused for its own values returns its UserError instead
# (mnist_lit.command). With either sweeper, a refused job is recorded as failed here in one line, the other jobs
# run, and a sweep with a failed job ends with one line and status 2.
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


class SweepSummaryCallback(Callback):
    """Records a failed job's error in its directory and rewrites the sweep's summary after every job.

    Rewriting after every job (not only when the multirun ends) keeps the summary whole when the
    sweep ends early: Hydra's basic sweeper raises the first failed job's error once its batch
    is done, and then ``on_multirun_end`` is never called. A file lock serialises jobs that end
    together (joblib, submitit), so the last one to write has seen every finished job.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        # An Optuna study resumes in a new sweep directory (its sweeper says so); a grid sweep goes on in its own.
        again = "" if optuna_sweep(config) else f"hydra.sweep.dir={sweep_dir}"
        when_interrupted(lambda line: self.interrupted(sweep_dir, line, again))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        error = job_error(job_return)
        if error is not None:
            text = "".join(traceback.format_exception_only(type(error), error))
            text += "\n" + "".join(traceback.format_exception(type(error), error, error.__traceback__))
            write_text(Path(config.hydra.runtime.output_dir) / ERROR_FILE, text)
            if isinstance(error, UserError):
                report(f"job {config.hydra.job.num} ({' '.join(job_return.overrides or [])}): {error}")
            else:
                log.error("Job %s failed: %s", config.hydra.job.num, text.splitlines()[0])
        self._write(Path(config.hydra.sweep.dir), finished=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = self._write(sweep_dir, finished=True)
        done = [j for j in jobs if j.status == "ok"]
        keys, _ = differing_keys(jobs) if jobs else ([], {})
        if done:
            best = done[0]
            val_acc = best.figures.get("val/acc")
            log.info("Best of %d: %s (%s) val/acc %.4f", len(jobs), label(best), describe(best, keys), val_acc)
        groups = fold_groups(jobs)
        if groups:
            log.info("%s", fold_verdict(groups, keys))
        failed = len(jobs) - len(done)
        log.info("Sweep summary (%d failed): %s", failed, sweep_dir / "summary.md")
        here = [j for j in jobs if j.path is not None and sweep_dir.resolve() in j.path.resolve().parents]
        if here and all(j.status == "failed" for j in here):  # an Optuna sweep goes on past failed trials
            exit_with(
                f"every job of this sweep failed, {len(here)} of {len(here)} ({label(here[0])}: {here[0].error}): "
                f"see {sweep_dir / 'summary.md'}"
            )
        lost = [j for j in here if j.status == "failed"]  # a shared study's other trials are not this sweep's
        if lost:
            summary = sweep_dir / "summary.md"
            exit_with(f"{len(lost)} of the sweep's {len(here)} jobs failed: {summary} lists each error")

    @classmethod
    def interrupted(cls, sweep_dir: Path, line: str, again: str = "") -> str:
        """Once Ctrl-C or SIGTERM has stopped the multirun: each job it left unfinished gets ``line`` as its
        error.txt (the summary lists it as failed with that line), and the summary is written; what to say
        (``again``: the override with which the same command goes on with the sweep)."""
        jobs_left = [
            job_dir
            for job_dir in sorted(p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml"))
            if not (job_dir / "metrics.json").exists() and not (job_dir / ERROR_FILE).exists()
        ]
        try:
            for job_dir in jobs_left:
                write_text(job_dir / ERROR_FILE, line + "\n")
            jobs = cls._write(sweep_dir, finished=True)
        except (OSError, UserError) as e:
            return (
                f"the sweep's summary was not written ({e}): python -m mnist_lit.sweep_summary {sweep_dir} "
                "writes it, listing the unfinished jobs as failed"
            )
        stopped = ", ".join(d.name for d in jobs_left) or "none"
        go_on = f"; the same command with {again} goes on with the jobs not finished" if again else ""
        return (
            f"{sweep_dir / 'summary.md'} lists the {len(jobs)} jobs that started, with {stopped} as interrupted "
            f"(the jobs not started are not in it){go_on}"
        )

    @staticmethod
    def _write(sweep_dir: Path, finished: bool) -> list[Job]:
        with FileLock(sweep_dir / ".summary.lock"):
            return write_summary(sweep_dir, finished=finished)
