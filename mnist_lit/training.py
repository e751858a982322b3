"""``train(cfg)``: build everything from the composed config, fit, test the best checkpoint, write metrics.json."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from mnist_lit.callbacks import EpochSummary
from mnist_lit.config import check_config, command_config
from mnist_lit.evaluation import evaluate
from mnist_lit.files import write_text
from mnist_lit.models import count_parameters
from mnist_lit.parallel import setup_parallelism
from mnist_lit.runtime import configure_process

try:
    import resource
except ImportError:  # Windows has no getrusage
    resource = None

log = logging.getLogger(__name__)

# The images are in memory, so worker processes would only add start-up and IPC cost.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def plain(cfg: DictConfig | None) -> Any:
    """A config node as plain Python values (what checkpoints and JSON can hold)."""
    return OmegaConf.to_container(cfg, resolve=True) if cfg is not None else None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, lists as strings (for TensorBoard's HParams tab)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    if resource is None:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)


def find_callback(trainer: L.Trainer, kind: type) -> Any:
    return next((cb for cb in trainer.callbacks if isinstance(cb, kind)), None)


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """The data module, model and trainer that ``cfg`` describes, as ``train`` uses them."""
    datamodule = instantiate(cfg.data)
    # Hyperparameters as plain values (checkpoints load with weights_only=True); the optimizer and
    # scheduler configs are instantiated by the module's configure_optimizers, not here.
    module_class = get_class(cfg.module._target_)
    model = module_class(model=plain(cfg.model), optimizer=plain(cfg.optimizer), scheduler=plain(cfg.get("scheduler")))
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    return datamodule, model, trainer


def stop_reason(trainer: L.Trainer) -> tuple[bool, str]:
    """(stopped early?, why training ended), in words."""
    early = trainer.early_stopping_callback
    if early is not None and early.stopping_reason_message:
        return True, early.stopping_reason_message.strip()
    if trainer.interrupted:
        return False, "interrupted"
    return False, f"reached trainer.max_epochs={trainer.max_epochs}"


def summarise(history: list[dict[str, Any]], test: dict[str, float]) -> dict[str, Any]:
    """Test figures, and validation figures of the best epoch (lowest val/loss, as ModelCheckpoint keeps)."""
    scored = [r for r in history if "val/loss" in r and math.isfinite(r["val/loss"])]
    best = min(scored, key=lambda r: r["val/loss"]) if scored else {}
    return {
        "test/acc": test.get("test/acc"),
        "test/loss": test.get("test/loss"),
        "val/acc": best.get("val/acc"),
        "val/loss": best.get("val/loss"),
        "best_epoch": best.get("epoch"),
    }


def log_hyperparameters(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """The config with the final metrics, for TensorBoard's HParams tab, and as a text table."""
    logger = trainer.logger
    if not isinstance(logger, TensorBoardLogger):
        return
    params = flatten({k: v for k, v in plain(cfg).items() if k in ("model", "optimizer", "data", "seed", "trainer")})
    params.pop("data.data_dir", None)
    final = {f"hp/{k.replace('/', '_')}": float(v) for k, v in metrics.items() if k.count("/") == 1 and v is not None}
    logger.log_hyperparams(params, final)
    table = "| key | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in sorted(params.items()))
    logger.experiment.add_text("hyperparameters", table)
    logger.save()


def train(cfg: DictConfig) -> float | None:
    """Train and test the model ``cfg`` describes; returns ``cfg.optimized_metric`` if set."""
    check_config(cfg)
    configure_process(cfg.keep_freed_memory)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    setup_parallelism(cfg)  # torch threads of a parallel sweep job; where DDP may start processes
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model, trainer = build(cfg)

    started = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    except SIGTERMException:
        # Lightning stops after the current batch (ResumeHint names the checkpoint to resume); a
        # pre-empted job should not look successful to its scheduler.
        raise SystemExit(128 + signal.SIGTERM) from None
    fit_seconds = time.perf_counter() - started

    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    # Read before testing: testing from best.ckpt restores the callbacks' state as it was at that epoch.
    summary = find_callback(trainer, EpochSummary)
    history = [dict(record) for record in summary.history] if summary is not None else []
    stopped_early, reason = stop_reason(trainer)
    facts = {
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,  # optimizer steps, the x-axis of TensorBoard's scalars
        "stopped_early": stopped_early,
        "stop_reason": reason,
        "fit_seconds": round(fit_seconds, 3),
        "startup_seconds": round(summary.startup_seconds, 3) if summary and summary.startup_seconds else None,
        "parameters": count_parameters(model),
    }
    if stopped_early and trainer.is_global_zero:
        log.warning("Stopped early: %s", reason)
    diverged = not any(math.isfinite(r.get("val/loss", math.nan)) for r in history)
    if diverged and trainer.is_global_zero:
        log.error("Training diverged (no finite val/loss); not testing. Try a lower optimizer.lr (now %s).",
                  cfg.optimizer.get("lr"))  # fmt: skip
    test: dict[str, float] = {}
    if best_path and not trainer.interrupted and not diverged:
        test = trainer.test(model, datamodule=datamodule, ckpt_path=best_path, weights_only=True, verbose=False)[0]
    metrics = {**summarise(history, test), **facts, "peak_rss_mb": peak_rss_mb(), "history": history}
    metrics["threads"] = torch.get_num_threads()  # what fit_seconds was measured with
    if trainer.is_global_zero:
        write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        log_hyperparameters(trainer, cfg, metrics)
        if cfg.get("evaluate_after_fit") and test:
            # The same report as python evaluate.py run_dir=<this run>: best.ckpt on the test split.
            evaluate(command_config("eval", run_dir=str(run_dir)))
        acc = metrics["test/acc"]
        shown = f"test/acc {acc:.4f}" if acc is not None else f"no test ({metrics['stop_reason']})"
        log.info("Run directory: %s  %s", run_dir, shown)
    key = cfg.get("optimized_metric")
    return metrics.get(key) if key else None
