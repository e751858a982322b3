"""What the loggers of conf/logger/ get beyond what Lightning logs to each of them (the curves and the test figures,
at the same steps): the run's hyperparameters, the same for every logger, and in MLflow the run's files.

TensorBoard gets its hyperparameters in its own HParams entry, with the run's figures
(``mnist_lit.display.tensorboard.write_run_summary``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger
from omegaconf import DictConfig

from mnist_lit.config.schema import built_or_refused

SQLITE = "sqlite:///"


def built_logger(key: str, node: DictConfig) -> Logger:
    """The logger ``node`` (``logger.<name>``, at ``key``) describes. An MLflow logger on a SQLite store begins its
    run here, the store's file locked meanwhile: MLflow creates a new store's tables, and then the experiment, when
    it first opens them, and two jobs of a parallel sweep doing that at once would collide."""
    uri = str(node.get("tracking_uri") or "")
    if not uri.startswith(SQLITE):
        return built_or_refused(key, node._target_, lambda: instantiate(node))
    store = Path(uri.removeprefix(SQLITE))
    store.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{store}.lock"):
        logger = built_or_refused(key, node._target_, lambda: instantiate(node))
        if isinstance(logger, MLFlowLogger):
            logger.run_id  # noqa: B018  (begins the run, making the experiment if it is new)
    return logger


def log_hyperparameters(loggers: Iterable[Logger], values: dict[str, Any]) -> None:
    """``values`` (``run_hparams``: the keys that describe the run) to every logger but TensorBoard."""
    for logger in loggers:
        if not isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(values)


def log_run_files(loggers: Iterable[Logger], files: dict[str, Path]) -> None:
    """``files`` ({where in the run's artifacts: a file, or a folder of files}) as artifacts of each MLflow run."""
    for logger in loggers:
        if not isinstance(logger, MLFlowLogger):
            continue
        for name, path in files.items():
            if path.is_dir():
                logger.experiment.log_artifacts(logger.run_id, str(path), name)
            elif path.is_file():
                folder = Path(name).parent.as_posix()
                logger.experiment.log_artifact(logger.run_id, str(path), None if folder == "." else folder)
