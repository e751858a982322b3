"""``train(cfg)``: build everything from the composed config, fit, test the best checkpoint, write metrics.json."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from mnist_lit.config.checks import check_config, command_config
from mnist_lit.config.schema import built_or_refused, plain
from mnist_lit.display.progress import latest_checkpoint
from mnist_lit.display.tensorboard import (
    EVENT_FILES,
    run_hparams,
    sweep_params,
    write_curves_layout,
    write_run_summary,
)
from mnist_lit.display.terminal import quiet_lightning
from mnist_lit.evaluation.evaluate import evaluate
from mnist_lit.history import EpochHistory
from mnist_lit.interrupts import explained, raise_pending, terminate
from mnist_lit.io.atomic import library_writes, write_text
from mnist_lit.io.readers import load_metrics
from mnist_lit.io.run_dir import LAST_CHECKPOINT, claimed_job_dir, save_run_config
from mnist_lit.loggers import built_logger, log_hyperparameters, log_run_files
from mnist_lit.models.base import count_parameters, flops_per_image
from mnist_lit.precision import AUTO, precision_for
from mnist_lit.process.memory import configure_process
from mnist_lit.process.parallel import setup_parallelism
from mnist_lit.process.resources import begin_job, peak_rss_mb
from mnist_lit.sweeps.optuna_pruning import pruning_callback
from mnist_lit.sweeps.summary import ERROR_FILE

log = logging.getLogger(__name__)


def find_callback(trainer: L.Trainer, kind: type) -> Any:
    return next((cb for cb in trainer.callbacks if isinstance(cb, kind)), None)


def tensorboards(trainer: L.Trainer) -> list[TensorBoardLogger]:
    """The trainer's TensorBoard loggers (logger=[...] may hold one among others)."""
    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def build(
    cfg: DictConfig, extra_callbacks: tuple[L.Callback, ...] = (), datamodule: L.LightningDataModule | None = None
) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """The data module (``datamodule``: as ``check_config`` built it), model and trainer that ``cfg`` describes
    (plus ``extra_callbacks``), each built once; a class that refuses its settings is a ConfigError naming its key.
    The optimizer and scheduler are built by the module's ``configure_optimizers``."""
    if datamodule is None:
        datamodule = built_or_refused("data", cfg.data._target_, lambda: instantiate(cfg.data))
    # Hyperparameters as plain values: checkpoints load with weights_only=True. The network is built for the data
    # module's images and classes (its spec: a folder's images are read for it).
    settings = {"model": plain(cfg.model), "optimizer": plain(cfg.optimizer), "scheduler": plain(cfg.get("scheduler"))}
    model = built_or_refused(
        "model",
        cfg.model._target_,
        lambda: get_class(cfg.module._target_)(
            **settings, dataset=cfg.data.get("dataset"), data=datamodule.spec().as_dict()
        ),
    )
    callbacks = [
        built_or_refused(f"callbacks.{name}", node._target_, lambda node=node: instantiate(node))
        for name, node in cfg.callbacks.items()
        if node is not None
    ] + list(extra_callbacks)
    # logger=[tensorboard,csv,mlflow]: one node each under logger (none: logger=[]); Lightning logs to each at the
    # same steps
    loggers = [
        built_logger(f"logger.{name}", node) for name, node in (cfg.get("logger") or {}).items() if node is not None
    ]
    # trainer.precision=auto is this project's, not Lightning's: it becomes a precision for this machine
    precision = precision_for(cfg).precision
    trainer = built_or_refused(
        "trainer",
        cfg.trainer._target_,
        lambda: instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, precision=precision),
    )
    return datamodule, model, trainer


def stop_reason(trainer: L.Trainer) -> tuple[bool, str]:
    """(stopped early?, why training ended), in words."""
    early = trainer.early_stopping_callback
    if early is not None and early.stopping_reason_message:
        return True, early.stopping_reason_message.strip()
    if trainer.interrupted:
        return False, "interrupted"
    return False, f"reached trainer.max_epochs={trainer.max_epochs}"


@contextlib.contextmanager
def trainer_call() -> Iterator[None]:
    """Around ``trainer.fit``/``trainer.test``: Lightning's endings of Ctrl-C and SIGTERM made the project's again.

    Lightning ends a Ctrl-C with ``sys.exit(1)`` and a SIGTERM, after the current batch, with its
    SIGTERMException (a SystemExit without a status). They become KeyboardInterrupt and ``Terminated``,
    which the command's ``interruptible`` wrapper ends with 130 / 143 and its one line (mnist_lit.interrupts).
    """
    try:
        yield
    except SIGTERMException:
        terminate()
    except SystemExit as e:
        if isinstance(e.__context__, KeyboardInterrupt):  # the exit Lightning's Ctrl-C handling ends with
            raise KeyboardInterrupt from None
        raise
    raise_pending()  # a SIGTERM in a loop's last batch, which Lightning lets finish without stopping


def summarise(
    history: list[dict[str, Any]], test: dict[str, float], checkpoint: ModelCheckpoint | None
) -> dict[str, Any]:
    """Test figures, and validation figures of the epoch the best checkpoint (a ModelCheckpoint) kept: the first
    with the lowest or highest value of what it monitors (``val/loss`` by default); the last epoch without one."""
    scored = [r for r in history if "val/loss" in r and math.isfinite(r["val/loss"])]
    if checkpoint is None or checkpoint.monitor is None:
        best = scored[-1] if scored else {}
    else:
        monitor = checkpoint.monitor
        scored = [r for r in scored if monitor in r and math.isfinite(r[monitor])]
        pick = max if checkpoint.mode == "max" else min
        best = pick(scored, key=lambda r: r[monitor]) if scored else {}  # ties: the first, as ModelCheckpoint
    return {
        "test/acc": test.get("test/acc"),
        "test/loss": test.get("test/loss"),
        "val/acc": best.get("val/acc"),
        "val/loss": best.get("val/loss"),
        "best_epoch": best.get("epoch"),
    }


def fit_finished(run_dir: Path, checkpoints: list[str], written: list[Path]) -> str:
    """What an interruption after the fit (in the test of best.ckpt, or after it) keeps, and how to go on."""
    if written:
        done = f"training and its test had finished and {written[0]} is written"
        return f"{done}: python evaluate.py run_dir={run_dir} writes the report"
    kept = " and ".join(dict.fromkeys(p for p in checkpoints if p)) or "no checkpoint"
    return (
        f"training had finished ({kept} kept) but not its test, so {run_dir / 'metrics.json'} is not written: "
        f"python evaluate.py run_dir={run_dir} gives best.ckpt's test figures"
    )


def train(cfg: DictConfig) -> float | None:
    """Train and test the model ``cfg`` describes; returns ``cfg.optimized_metric`` if set."""
    begin_job()
    quiet_lightning()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    with library_writes(run_dir / EVENT_FILES):  # TensorBoard's and Lightning's own writes, the one line of a full disk
        if hydra_cfg.mode == RunMode.MULTIRUN:
            with claimed_job_dir(run_dir, Path(hydra_cfg.sweep.dir), cfg) as own:
                # The same command run before in this sweep directory: a finished job is kept, an unfinished one
                # resumes.
                if own and (run_dir / "metrics.json").exists():
                    return recorded_result(cfg, run_dir, hydra_cfg.sweep.dir)
                if own and (run_dir / LAST_CHECKPOINT).is_file():
                    cfg.ckpt_path = str(run_dir / LAST_CHECKPOINT)
                (run_dir / ERROR_FILE).unlink(missing_ok=True)  # what an earlier attempt's failure left
                save_run_config(cfg)  # before the checks: a refused job's folder still says what it was
                return fit_and_test(cfg, hydra_cfg, run_dir, check_config(cfg))
        return fit_and_test(cfg, hydra_cfg, run_dir, check_config(cfg))


def recorded_result(cfg: DictConfig, run_dir: Path, sweep_dir: str) -> float | None:
    """A sweep's job that finished in an earlier run of the sweep, not run again: it returns its metrics.json's
    ``cfg.optimized_metric`` (for the sweeper)."""
    metrics = load_metrics(run_dir / "metrics.json", f"hydra.sweep.dir={sweep_dir}")
    log.info("Finished in an earlier run of this sweep, kept as it was: %s", run_dir)
    key = cfg.get("optimized_metric")
    return metrics.get(key) if key else None


def fit_and_test(
    cfg: DictConfig, hydra_cfg: DictConfig, run_dir: Path, datamodule: L.LightningDataModule
) -> float | None:
    """``train``'s work once the config and the run's folder are checked."""
    configure_process(cfg.keep_freed_memory)
    setup_parallelism(cfg)  # torch threads of a parallel sweep job; where DDP may start processes
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    pruning = pruning_callback(cfg)  # only in a trial of an Optuna sweep that prunes
    datamodule, model, trainer = build(cfg, (pruning,) if pruning else (), datamodule)
    if trainer.is_global_zero:
        save_run_config(cfg)
    if trainer.is_global_zero:
        precision = precision_for(cfg)
        chosen = f"; precision auto: {precision.reason}" if str(cfg.trainer.get("precision")) == AUTO else ""
        log.info(
            "%s: %s parameters, %.2f MFLOPs an image; %s x%d, precision %s, %d threads%s",
            cfg.run_name, f"{count_parameters(model):,}", flops_per_image(model.net, model.spec.input_shape) / 1e6,
            trainer.strategy.root_device.type, trainer.num_devices, trainer.precision, torch.get_num_threads(), chosen,
        )  # fmt: skip
        if precision.warning:
            log.warning("Warning: %s", precision.warning)
        if cfg.get("ckpt_path"):
            log.info("Resuming from %s", cfg.ckpt_path)
        for logger in tensorboards(trainer):
            write_curves_layout(Path(logger.log_dir))
        log_hyperparameters(trainer.loggers, run_hparams(cfg, sweep_params(hydra_cfg)))

    started = time.perf_counter()
    with trainer_call():  # Lightning stops after the current batch; ResumeHint names the checkpoint to resume
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    fit_seconds = time.perf_counter() - started

    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    # Named now: testing from best.ckpt restores the checkpoint callbacks' state as it was at that epoch.
    checkpoints = [best_path, latest_checkpoint(trainer)]
    written: list[Path] = []  # metrics.json, once written
    with explained(lambda: fit_finished(run_dir, checkpoints, written)):
        # Read before testing: testing from best.ckpt restores the callbacks' state as it was at that epoch.
        summary = find_callback(trainer, EpochHistory)
        history = [dict(record) for record in summary.history] if summary is not None else []
        stopped_early, reason = stop_reason(trainer)
        pruned_epoch = pruning.pruned_epoch if pruning else None
        if pruned_epoch is not None:
            stopped_early, reason = True, pruning.reason
        facts = {
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,  # optimizer steps, the x-axis of TensorBoard's scalars
            "stopped_early": stopped_early,
            "stop_reason": reason,
            "pruned_epoch": pruned_epoch,  # the last epoch of a trial Optuna's pruner stopped; null otherwise
            "fit_seconds": round(fit_seconds, 3),
            "startup_seconds": round(summary.startup_seconds, 3) if summary and summary.startup_seconds else None,
            "parameters": count_parameters(model),
        }
        if stopped_early and trainer.is_global_zero:
            log.info("Stopped early: %s", reason)
        validated = [r["val/loss"] for r in history if "val/loss" in r]  # none when a fit ends before validating
        diverged = bool(validated) and not any(math.isfinite(v) for v in validated)
        if diverged and trainer.is_global_zero:
            log.error("Training diverged (no finite val/loss); not testing. Try a lower optimizer.lr (now %s).",
                      cfg.optimizer.get("lr"))  # fmt: skip
        test: dict[str, float] = {}
        # A pruned trial is hopeless by the study's measure: its test set is not worth the time.
        if best_path and not trainer.interrupted and not diverged and pruned_epoch is None:
            with trainer_call():
                test = trainer.test(
                    model, datamodule=datamodule, ckpt_path=best_path, weights_only=True, verbose=False
                )[0]
        metrics = {**summarise(history, test, checkpoint), **facts, "peak_rss_mb": peak_rss_mb(), "history": history}
        metrics["test_set"] = datamodule.test_source  # where the test images came from
        metrics["threads"] = torch.get_num_threads()  # what fit_seconds was measured with
        metrics["precision"] = str(trainer.precision)  # what trainer.precision=auto chose
        if trainer.is_global_zero:
            write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
            written.append(run_dir / "metrics.json")
            for logger in tensorboards(trainer):
                write_run_summary(Path(logger.log_dir), cfg, sweep_params(hydra_cfg), metrics)
            evaluated = bool(cfg.get("evaluate_after_fit") and test)
            if evaluated:
                # The same report as python evaluate.py run_dir=<this run>: best.ckpt on the test split.
                evaluate(command_config("eval", run_dir=str(run_dir)))
            # MLflow's copies, in the run directory's layout; metrics.json and the report stay what counts
            files = {"metrics.json": run_dir / "metrics.json", **({"report": run_dir / "report"} if evaluated else {})}
            if best_path:
                files[f"checkpoints/{Path(best_path).name}"] = Path(best_path)
            log_run_files(trainer.loggers, files)
            acc = metrics["test/acc"]
            shown = f"test/acc {acc:.4f}" if acc is not None else f"no test ({metrics['stop_reason']})"
            log.info("Run directory: %s  %s", run_dir, shown)
    key = cfg.get("optimized_metric")
    return metrics.get(key) if key else None
