"""The project's OmegaConf resolvers, registered on import: the entry points import this before Hydra composes.

Only the standard library and omegaconf here, so that a command refused before it starts loads
neither torch nor Lightning.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resumed_run(ckpt_path: str | None) -> Path | None:
    """The run directory of ``<run>/checkpoints/<name>.ckpt``, or None."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path).expanduser().resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else None


def resume_dir(ckpt_path: str | None, default: str) -> str:
    """The run directory of ``<run>/checkpoints/<name>.ckpt``, so that a resumed run continues in place."""
    run = resumed_run(ckpt_path)
    return str(run) if run is not None else default


def usable_cores() -> int:
    """The cores this process may run on (joblib's count: CPU affinity and container limits included)."""
    import joblib  # here, not at the top: the entry points import this module before anything else

    return joblib.cpu_count()


def parallel_jobs(n_jobs: int | None) -> int:
    """How many sweep jobs run at once for a launcher's ``n_jobs`` (None: one at a time; -1: one per core)."""
    import joblib

    return 1 if n_jobs is None else joblib.effective_n_jobs(n_jobs)


def threads_per_job(n_jobs: int | None) -> int | None:
    """Each parallel job's share of the cores; None (torch's default) when jobs run one at a time."""
    if n_jobs is None:
        return None
    return max(1, usable_cores() // parallel_jobs(n_jobs))


def job_prefix(mode: object, num: object) -> str:
    """``"[job 3] "`` for a multirun's job, ``""`` for a single run: tells parallel jobs' lines apart."""
    return f"[job {num}] " if str(mode).endswith("MULTIRUN") and num is not None else ""


def job_name(mode: object, output_dir: str, run_name: str) -> str:
    """The name a logger gives the run: ``run_name`` (which names the run's folder in logs/runs/), for a multirun's
    job the name of its own folder (``<job number>_<run_name>``), so that jobs of one ``run_name`` are told apart."""
    return Path(output_dir).name if str(mode).endswith("MULTIRUN") else run_name


def mlflow_artifacts(tracking_uri: str | None, folder: str) -> str | None:
    """Where a new MLflow experiment keeps its runs' files: ``folder`` for a store this process writes itself (a
    database or a folder), None for a tracking server (http, https), which keeps them where it is set up to."""
    return None if urlsplit(str(tracking_uri or "")).scheme in ("http", "https") else folder


OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)
OmegaConf.register_new_resolver("resume_dir", resume_dir, replace=True)
# ${threads_per_job:${hydra:launcher.n_jobs}} in conf/train.yaml: the joblib launcher has n_jobs,
# the basic and submitit launchers do not (they give None, so torch keeps its default).
OmegaConf.register_new_resolver("threads_per_job", threads_per_job, replace=True)
OmegaConf.register_new_resolver("parallel_jobs", parallel_jobs, replace=True)
# conf/hydra/default.yaml puts ${job_prefix:...} before every terminal line of a job.
OmegaConf.register_new_resolver("job_prefix", job_prefix, replace=True)
# conf/logger/mlflow.yaml and wandb.yaml name the run ${job_name:${hydra:mode},${hydra:runtime.output_dir},${run_name}}
OmegaConf.register_new_resolver("job_name", job_name, replace=True)
# conf/logger/mlflow.yaml: ${mlflow_artifacts:${.tracking_uri},<folder>}
OmegaConf.register_new_resolver("mlflow_artifacts", mlflow_artifacts, replace=True)
