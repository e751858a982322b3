"""A sweep's jobs side by side, best first: ``python -m mnist_lit.sweep_summary <sweep dir>``.

Reads each job directory of a Hydra multirun (``.hydra/overrides.yaml``, ``metrics.json``, and
``error.txt`` for a job that raised) and writes ``summary.csv``, ``summary.md`` and
``accuracy_vs_parameters.png`` into the sweep directory. Jobs are ranked by validation accuracy:
the test set is reported, never used to choose. The jobs of a cross-validation (``cv=kfold``) that
differ only by their fold (``cv.fold``) are one setting's folds: ``folds.csv`` and a table of summary.md
give each setting's mean and standard deviation across its folds, best mean validation accuracy first.
The jobs of an Optuna study (``hydra/sweeper=optuna_study``) come with every other trial of their
study: those of earlier or concurrent commands, from the job directories the study records, and the
trials no job finished.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from mnist_lit.config.schema import finite
from mnist_lit.config.settings import FOLD_KEY
from mnist_lit.display.tables import markdown_table
from mnist_lit.errors import ConfigError, UserError
from mnist_lit.io.owned import Owned
from mnist_lit.io.readers import FileProblem, JobFileError, kind_of, load_job, read_text, read_yaml

SUMMARY_FILES = ("summary.csv", "summary.md", "accuracy_vs_parameters.png")
FOLDS_FILE = "folds.csv"  # a cross-validation's settings, each one's folds together: written where there are folds
# What marks these files as this project's: summary.md's title and the sentence after its counts, the plot's metadata.
SUMMARY_TITLE = "# Sweep summary: "
SUMMARY_MARK = "Ranked by the best epoch's validation accuracy; test accuracy is shown, never used to choose."
PLOT_MARK = ("Description", "mnist_lit sweep summary: accuracy against parameter count")
PLOT_INCHES, PLOT_DPI = (7, 4.5), 120
PLOT_PIXELS = (840, 540)  # PLOT_INCHES at PLOT_DPI
ERROR_FILE = "error.txt"
# (column, metrics.json key, format) for each job's figures
FIGURES = (
    ("val/acc", "val/acc", ".4f"),
    ("test/acc", "test/acc", ".4f"),
    ("epochs", "epochs", "d"),
    ("parameters", "parameters", ","),
    ("fit_seconds", "fit_seconds", ".1f"),
    ("threads", "threads", "d"),
)


@dataclass
class Job:
    """One job directory of a sweep and what it left behind."""

    num: int
    path: Path | None  # None: a trial of the study whose job left no directory
    overrides: dict[str, str]
    error: str | None = None
    status: str = "ok"  # ok, pruned, failed or running
    figures: dict[str, Any] = field(default_factory=dict)
    trial: int | None = None  # the Optuna trial the job ran
    study: tuple[str, str] | None = None  # (storage, study name) of that trial
    directory: str = ""  # as the summary shows it

    def __post_init__(self) -> None:
        if not self.directory and self.path is not None:
            self.directory = self.path.name

    @property
    def val_acc(self) -> float:
        value = self.figures.get("val/acc")
        return value if isinstance(value, (int, float)) and math.isfinite(value) else -math.inf


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """``["model=cnn", "model.dense=64"]`` -> ``{"model": "cnn", "model.dense": "64"}`` (+/++/~ prefixes dropped)."""
    parsed: dict[str, str] = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        parsed[key.lstrip("+~")] = value
    return parsed


def job_number(job_dir: Path, hydra: dict[str, Any]) -> int:
    """``hydra.job.num`` from the job's saved Hydra config (the directory name's prefix if that is missing)."""
    job = hydra.get("job")
    num = job.get("num") if isinstance(job, dict) else None
    if isinstance(num, int):
        return num
    prefix = job_dir.name.split("_", 1)[0]
    return int(prefix) if prefix.isdigit() else -1


def job_study(hydra: dict[str, Any]) -> tuple[int | None, tuple[str, str] | None]:
    """(trial number, (storage, study name)) of a job of an Optuna study sweep, from its Hydra config; else Nones."""
    sweeper = hydra.get("sweeper") or {}
    trial = sweeper.get("trial") if isinstance(sweeper, dict) else None
    if not isinstance(trial, int) or not sweeper.get("storage") or not sweeper.get("study_name"):
        return None, None
    return trial, (str(sweeper["storage"]), str(sweeper["study_name"]))


def first_error_line(text: str) -> str:
    """The exception's own line (``ConfigError: ...``) from error.txt's text."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "failed (error.txt is empty)"


def read_job(job_dir: Path, finished: bool) -> Job:
    """The job in ``job_dir``; without metrics.json it failed (or, while the sweep runs, is running).

    A job whose files cannot be read is listed as failed, naming the file and what is wrong with it, rather
    than ending the summary.
    """
    try:
        files = load_job(job_dir)
    except JobFileError as e:
        return Job(num=job_number(job_dir, {}), path=job_dir, overrides={}, status="failed", error=str(e))
    trial, study = job_study(files.hydra)
    overrides = parse_overrides(files.overrides)
    job = Job(num=job_number(job_dir, files.hydra), path=job_dir, overrides=overrides, trial=trial, study=study)
    if files.metrics is not None:
        job.figures = {column: files.metrics.get(key) for column, key, _ in FIGURES}
        if files.metrics.get("pruned_epoch") is not None:
            job.status, job.error = "pruned", f"pruned after epoch {files.metrics['pruned_epoch']}"
    elif files.error is not None:
        job.status, job.error = "failed", first_error_line(files.error)
    elif finished:
        logs = sorted(p.name for p in job_dir.glob("*.log"))
        seen = f"; see {logs[0]}" if logs else ""
        job.status = "failed"
        job.error = f"no metrics.json: the job stopped without a Python error (killed?) or is still running{seen}"
    else:
        job.status = "running"
    return job


def shown_directory(job_dir: Path, sweep_dir: Path) -> str:
    """A job directory as the summary of ``sweep_dir`` names it: relative to the sweep, or to the sweeps' folder."""
    for base, prefix in ((sweep_dir, ""), (sweep_dir.parent, "../")):
        try:
            return prefix + str(job_dir.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(job_dir)


def trial_status(trial: Any) -> tuple[str, str | None]:
    """(status, why) of a study's trial that has no job directory to read."""
    from optuna.trial import TrialState

    attrs = trial.user_attrs
    if trial.state == TrialState.COMPLETE:
        return "ok", None
    if trial.state == TrialState.PRUNED:
        return "pruned", f"pruned after epoch {attrs.get('pruned_epoch', '?')}"
    if trial.state == TrialState.RUNNING:
        return "running", "running in another command"
    if "not_run" in attrs:
        return "failed", f"not run: {attrs['not_run']}"
    return "failed", attrs.get("error") or "interrupted: its command stopped before the job ended"


def study_jobs(study: tuple[str, str], seen: dict[int, Job], sweep_dir: Path, finished: bool) -> list[Job]:
    """The study's trials that are not jobs of ``sweep_dir`` (``seen``): read from the job directory each records,
    if any. A job of ``seen`` that ended but whose trial failed (the job returned no value to optimise) is failed."""
    import optuna
    from optuna.trial import TrialState

    from hydra_plugins.mnist_lit_optuna_sweeper.study import open_storage, study_exists

    storage_url, name = study
    try:
        storage = open_storage(storage_url, create=False)
    except UserError:
        return []
    if storage is None or not study_exists(storage, name):
        return []
    jobs = []
    for trial in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
        if trial.number in seen:
            if seen[trial.number].status == "ok" and trial.state == TrialState.FAIL:
                seen[trial.number].status, seen[trial.number].error = trial_status(trial)
            continue
        job_dir = Path(trial.user_attrs.get("job_dir") or sweep_dir / "-")
        if (job_dir / ".hydra" / "overrides.yaml").is_file():
            job = read_job(job_dir, finished)
            job.directory = shown_directory(job_dir, sweep_dir)
        else:
            status, why = trial_status(trial)
            overrides = {key: str(value) for key, value in trial.params.items()}
            figures = {"val/acc": trial.value} if status == "ok" else {}
            job = Job(num=-1, path=None, overrides=overrides, status=status, error=why, figures=figures)
        job.trial, job.study = trial.number, study
        jobs.append(job)
    return jobs


def read_sweep(sweep_dir: Path, finished: bool = True) -> list[Job]:
    """Every job of the sweep (and every trial of its Optuna study), best first: finished jobs by validation
    accuracy, then the others by trial or job number."""
    job_dirs = sorted(p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml"))
    jobs = [read_job(d, finished) for d in job_dirs if d != sweep_dir]
    study = next((j.study for j in jobs if j.study is not None), None)
    if study is not None:
        jobs += study_jobs(study, {j.trial: j for j in jobs if j.trial is not None}, sweep_dir, finished)
    done = [j for j in jobs if j.status == "ok"]
    # Ties go to the smaller network, then to the higher test accuracy.
    done.sort(key=lambda j: (-j.val_acc, j.figures.get("parameters") or 0, -(j.figures.get("test/acc") or 0)))
    rest = sorted((j for j in jobs if j.status != "ok"), key=lambda j: j.trial if j.trial is not None else j.num)
    return done + rest


@dataclass
class Folds:
    """The jobs of one setting that differ only by their fold (cv=kfold), and their figures across the folds."""

    setting: dict[str, str]  # the jobs' overrides but the fold
    jobs: list[Job]
    trial: int | None = None  # the Optuna trial whose folds they are

    def figures(self, column: str) -> tuple[float | None, float | None]:
        """(mean, sample standard deviation) of ``column`` over the finished folds; None where too few have it."""
        values = [j.figures[column] for j in self.jobs if j.status == "ok" and finite(j.figures.get(column))]
        mean = statistics.fmean(values) if values else None
        return mean, statistics.stdev(values) if len(values) > 1 else None


def fold_groups(jobs: list[Job]) -> list[Folds]:
    """The settings of a cross-validation, each with its folds' jobs: best mean val/acc first (none: no folds)."""
    groups: dict[tuple[Any, ...], Folds] = {}
    for job in jobs:
        if FOLD_KEY in job.overrides:
            setting = {k: v for k, v in job.overrides.items() if k != FOLD_KEY}
            key = (job.study, job.trial, *sorted(setting.items()))
            groups.setdefault(key, Folds(setting, [], job.trial)).jobs.append(job)
    for group in groups.values():
        group.jobs.sort(key=lambda j: j.num)
    return sorted(groups.values(), key=lambda g: -(g.figures("val/acc")[0] or -math.inf))


# folds.csv's and the summary's fold table's last columns: (column, figure, which of its mean and deviation)
FOLD_COLUMNS = (
    ("val/acc mean", "val/acc", 0), ("val/acc std", "val/acc", 1),
    ("test/acc mean", "test/acc", 0), ("test/acc std", "test/acc", 1),
)  # fmt: skip


def fold_table(groups: list[Folds], keys: list[str], raw: bool = False) -> tuple[list[str], list[list[str]]]:
    """The fold table's header and rows, one row per setting; ``raw`` keeps numbers unrounded (for folds.csv)."""
    keys = [k for k in keys if k != FOLD_KEY]
    trials = any(g.trial is not None for g in groups)
    header = ["rank", *(["trial"] if trials else []), *keys, "folds", *(c for c, _, _ in FOLD_COLUMNS), "jobs"]
    rows = []
    for rank, group in enumerate(groups, start=1):
        cells = []
        for _, column, which in FOLD_COLUMNS:
            value = group.figures(column)[which]
            cells.append("" if value is None else str(value) if raw else number(value, ".4f"))
        done = sum(j.status == "ok" for j in group.jobs)
        rows.append(
            [
                str(rank),
                *([str(group.trial) if group.trial is not None else ""] if trials else []),
                *(group.setting.get(k, "") for k in keys),
                f"{done} of {len(group.jobs)}" if done < len(group.jobs) else str(done),
                *cells,
                " ".join(str(j.num) for j in group.jobs),
            ]
        )
    return header, rows


def fold_verdict(groups: list[Folds], keys: list[str]) -> str:
    """The setting with the best mean validation accuracy across its folds, and its spread."""
    best = groups[0]
    (val, val_std), (test, test_std) = best.figures("val/acc"), best.figures("test/acc")
    if val is None:
        return "Cross-validation: no fold finished, so there is no best setting."
    done = sum(j.status == "ok" for j in best.jobs)
    which = f"{done} folds"
    if len(groups) > 1:
        shown = " ".join(f"{k}={best.setting[k]}" for k in keys if k != FOLD_KEY and k in best.setting)
        trial = f"trial {best.trial}, " if best.trial is not None else ""
        which = f"best mean of {len(groups)} settings: {trial}{shown or 'its overrides in folds.csv'} ({which})"
    return (
        f"Cross-validation, {which}: val/acc {number(val, '.4f')} ± {number(val_std, '.4f')}, "
        f"test/acc {number(test, '.4f')} ± {number(test_std, '.4f')} (mean ± standard deviation across the folds)."
    )


def differing_keys(jobs: list[Job]) -> tuple[list[str], dict[str, str]]:
    """(override keys whose values differ between jobs, the overrides every job shares)."""
    # A study's trials without a job directory have only their sampled values: they do not count here.
    jobs = [j for j in jobs if j.path is not None] or jobs
    keys: list[str] = []
    for job in jobs:
        keys.extend(k for k in job.overrides if k not in keys)
    varying = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
    common = {k: jobs[0].overrides[k] for k in keys if k not in varying and k in jobs[0].overrides}
    return (varying or keys), common


def describe(job: Job, keys: list[str]) -> str:
    """``model.filters=32 model.dense=64`` for the keys that tell the jobs apart."""
    return " ".join(f"{k}={job.overrides[k]}" for k in keys if k in job.overrides)


def table(jobs: list[Job], keys: list[str], raw: bool = False) -> tuple[list[str], list[list[str]]]:
    """The summary's header and rows, one row per job; ``raw`` keeps numbers unrounded (for the CSV)."""
    trials = any(j.trial is not None for j in jobs)  # an Optuna study's: its trial numbers too
    header = ["rank", "job", *(["trial"] if trials else []), "status", *keys]
    header += [*(column for column, _, _ in FIGURES), "directory", "error"]
    rows = []
    for rank, job in enumerate(jobs, start=1):
        figures = []
        for column, _, fmt in FIGURES:
            value = job.figures.get(column)
            figures.append("" if value is None else str(value) if raw else number(value, fmt))
        rows.append(
            [
                str(rank) if job.status == "ok" else "",
                str(job.num) if job.num >= 0 else "",
                *([str(job.trial) if job.trial is not None else ""] if trials else []),
                job.status,
                *(job.overrides.get(k, "") for k in keys),
                *figures,
                job.directory,
                job.error or "",
            ]
        )
    return header, rows


def number(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``, or "n/a" where the job did not record it."""
    return format(value, spec) if isinstance(value, (int, float)) else "n/a"


def ratio(a: Any, b: Any) -> str:
    """``a / b`` as ``1.23x``, or "n/a"."""
    return f"{a / b:.2f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "n/a"


def difference(a: Any, b: Any) -> str:
    """``a - b`` as ``+0.0123``, or "n/a"."""
    return f"{a - b:+.4f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else "n/a"


def label(job: Job) -> str:
    """``job 3``, or ``trial 7`` for a job of an Optuna study (job numbers start again with each command)."""
    return f"trial {job.trial}" if job.trial is not None else f"job {job.num}"


def verdict(jobs: list[Job], keys: list[str]) -> str:
    """Which combination won, by how much over the runner-up, and at what cost."""
    done = [j for j in jobs if j.status == "ok"]
    if not done:
        return "No job finished, so there is no best combination."
    best, b = done[0], done[0].figures
    line = (
        f"Best: {label(best)} ({describe(best, keys) or 'the only job'}): val/acc {number(b.get('val/acc'), '.4f')}, "
        f"test/acc {number(b.get('test/acc'), '.4f')}, {number(b.get('parameters'), ',')} parameters, "
        f"{number(b.get('fit_seconds'), '.1f')} s of fitting."
    )
    if len(done) > 1:
        second, s = done[1], done[1].figures
        line += (
            f" Ahead of the runner-up, {label(second)} ({describe(second, keys)}),"
            f" by {difference(b.get('val/acc'), s.get('val/acc'))} val/acc"
            f" ({difference(b.get('test/acc'), s.get('test/acc'))} test/acc),"
            f" with {ratio(b.get('parameters'), s.get('parameters'))} its parameters"
            f" and {ratio(b.get('fit_seconds'), s.get('fit_seconds'))} its fit time."
        )
    return line


def markdown(sweep_dir: Path, jobs: list[Job]) -> str:
    """summary.md: counts, the verdict, the shared overrides and the table."""
    keys, common = differing_keys(jobs)
    header, rows = table(jobs, keys)
    counts = {s: sum(j.status == s for j in jobs) for s in ("ok", "pruned", "failed", "running")}
    study = next((j.study for j in jobs if j.study is not None), None)
    parts = [
        f"{SUMMARY_TITLE}{sweep_dir}",
        "",
        f"{len(jobs)} jobs: {counts['ok']} finished, "
        + (f"{counts['pruned']} pruned, " if counts["pruned"] else "")
        + f"{counts['failed']} failed"
        + (f", {counts['running']} running" if counts["running"] else "")
        + f". {SUMMARY_MARK}",
        "",
        verdict(jobs, keys),
    ]
    groups = fold_groups(jobs)
    if groups:
        parts[-1:-1] = [fold_verdict(groups, keys), ""]
    if study is not None:
        here = sum(j.path is not None and j.path.parent.resolve() == sweep_dir.resolve() for j in jobs)
        parts += [
            "",
            f"Every trial of Optuna study `{study[1]}` (storage `{study[0]}`), {here} of them run by this sweep; "
            f"open it with `optuna-dashboard {study[0]}`.",
        ]
    optuna = sweep_dir / "optimization_results.yaml"
    if optuna.exists():
        parts += ["", optuna_line(optuna)]
    if common:
        parts += ["", "Every job: " + " ".join(f"`{k}={v}`" for k, v in common.items())]
    if groups:
        parts += ["", "Each setting's folds: mean and standard deviation across them", ""]
        parts += [markdown_table(*fold_table(groups, keys)), "Every job, one fold each:"]
    parts += ["", markdown_table(header, rows)]
    return "\n".join(parts)


def optuna_line(path: Path) -> str:
    """The sentence on the Optuna sweeper's optimization_results.yaml (or on what is wrong with that file)."""
    try:
        result = read_yaml(path)
    except FileProblem as e:
        return f"{path.name} cannot be read: the file {e.problem}."
    value = result.get("best_value") if isinstance(result, dict) else None
    if not finite(value):
        return f"{path.name} holds no best_value (a finite number): {kind_of(result)}."
    trial = f" (trial {result['best_trial']})" if "best_trial" in result else ""
    return f"Optuna's best trial: {value:.4f}{trial} with {result.get('best_params')}."


def csv_text(jobs: list[Job]) -> str:
    """summary.csv: the table's columns, numbers unrounded, plus every job's full list of overrides."""
    keys, _ = differing_keys(jobs)
    header, rows = table(jobs, keys, raw=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*header, "overrides"])
    for job, row in zip(jobs, rows, strict=True):
        writer.writerow([*row, " ".join(f"{k}={v}" for k, v in job.overrides.items())])
    return buffer.getvalue()


def folds_csv_text(groups: list[Folds], keys: list[str]) -> str:
    """folds.csv: the fold table, numbers unrounded."""
    header, rows = fold_table(groups, keys, raw=True)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    return buffer.getvalue()


def plot(jobs: list[Job], path: Path | BinaryIO) -> None:
    """Validation and test accuracy against parameter count, one point per finished job, labelled by job number."""
    from matplotlib.figure import Figure  # imported here: only the plot needs it, and it is slow to import

    done = [j for j in jobs if j.status == "ok" and j.figures.get("parameters")]
    figure = Figure(figsize=PLOT_INCHES, layout="constrained")
    ax = figure.add_subplot()
    for column, marker in (("val/acc", "o"), ("test/acc", "x")):
        points = [(j.figures["parameters"], j.figures[column]) for j in done if j.figures.get(column) is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, marker=marker, label=column)
    for job in done:
        if job.figures.get("val/acc") is not None:
            point = (job.figures["parameters"], job.figures["val/acc"])
            ax.annotate(str(job.num), point, fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("accuracy")
    missing = sum(j.status != "ok" for j in jobs)
    shown = f"{len(done)} jobs" + (f"; {missing} failed or running, not shown" if missing else "")
    ax.set_title(f"Accuracy against parameter count ({shown})")
    ax.grid(True, alpha=0.3)
    if done:
        ax.legend(title="points labelled by job number", fontsize=8, title_fontsize=8)
    figure.savefig(path, dpi=PLOT_DPI, format="png", metadata={PLOT_MARK[0]: PLOT_MARK[1]})


def is_own_summary_file(path: Path) -> bool:
    """Whether ``path`` (one of SUMMARY_FILES, or FOLDS_FILE) was written by this project: summary.md by its title
    and the sentence every summary has, summary.csv and folds.csv by their whole header lines, the plot by the mark
    in its metadata."""
    if path.name == "accuracy_vs_parameters.png":
        try:
            with Image.open(path) as image:
                info = {str(k): str(v) for k, v in image.info.items()}
                size = image.size
        except Exception:  # not an image at all: Pillow raises many kinds
            return False
        # plots written before the mark was added: matplotlib's, of this figure's size in pixels
        return info.get(PLOT_MARK[0]) == PLOT_MARK[1] or (
            info.get("Software", "").startswith("Matplotlib") and size == PLOT_PIXELS
        )
    try:
        text = read_text(path)
    except FileProblem:
        return False
    if path.name == "summary.md":
        return text.startswith(SUMMARY_TITLE) and SUMMARY_MARK in text.partition("\n\n")[2].partition("\n")[0]
    header = next(csv.reader(io.StringIO(text.partition("\n")[0])), [])
    if path.name == FOLDS_FILE:
        tail = [*(column for column, _, _ in FOLD_COLUMNS), "jobs"]
        return header[:1] == ["rank"] and "folds" in header and header[-len(tail) :] == tail
    middle = ["trial", "status"] if header[2:3] == ["trial"] else ["status"]
    tail = [*(column for column, _, _ in FIGURES), "directory", "error", "overrides"]
    return header[:2] == ["rank", "job"] and header[2 : 2 + len(middle)] == middle and header[-len(tail) :] == tail


# Each file of the summary, replaced only where it is this command's own.
SUMMARY = {name: Owned(f"a {name} this command wrote", is_own_summary_file) for name in (*SUMMARY_FILES, FOLDS_FILE)}


def check_summary_files(sweep_dir: Path) -> None:
    """The summary may replace only its own earlier files; ConfigError naming those that are someone else's."""
    foreign = [name for name, owned in SUMMARY.items() if not owned.replaceable(sweep_dir / name)]
    if foreign:
        raise ConfigError(
            f"sweep_dir={str(sweep_dir)!r} is not allowed: it holds {', '.join(foreign)} that this command did not "
            "write, and the summary would replace what is there. Move those files aside and run it again"
        )


def write_summary(sweep_dir: Path, finished: bool = True) -> list[Job]:
    """Write summary.csv, summary.md, the plot (and, for a cross-validation, folds.csv) into ``sweep_dir``; returns the
    jobs, best first.

    Earlier files of the summary are replaced; files of the same names that are not (a user's own) are refused.
    """
    check_summary_files(sweep_dir)
    jobs = read_sweep(sweep_dir, finished)
    with SUMMARY["summary.csv"].written(sweep_dir / "summary.csv") as f:
        f.write(csv_text(jobs))
    with SUMMARY["summary.md"].written(sweep_dir / "summary.md") as f:
        f.write(markdown(sweep_dir, jobs))
    with SUMMARY["accuracy_vs_parameters.png"].written(sweep_dir / "accuracy_vs_parameters.png", "wb") as f:
        plot(jobs, f)
    groups = fold_groups(jobs)
    if groups:
        with SUMMARY[FOLDS_FILE].written(sweep_dir / FOLDS_FILE) as f:
            f.write(folds_csv_text(groups, differing_keys(jobs)[0]))
    return jobs
