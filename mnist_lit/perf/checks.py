"""What ``perf=fast`` cannot honour, refused before anything runs."""

from __future__ import annotations

import lightning as L
from hydra.utils import get_class
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from omegaconf import DictConfig, OmegaConf

from mnist_lit.config.schema import fits
from mnist_lit.errors import ConfigError

# Hooks Lightning calls per fetched batch or per optimizer step: under perf=fast a fetch holds
# many batches and the optimizer steps inside training_step, so these would not mean what they say.
PER_BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
                   "on_before_optimizer_step", "on_before_zero_grad")  # fmt: skip
COUNTS_FETCHES = "an integer counts fetches of data.steps_per_fetch batches, not batches"
# Trainer flags the fast path cannot honour, when set: {flag: (whether a value is refused, why)}
REFUSED_FLAGS = {
    "gradient_clip_val": (lambda value: value != 0, "the optimizer steps inside training_step, unclipped"),
    "accumulate_grad_batches": (lambda value: value != 1, "every batch of a fetch takes its own step"),
    "limit_train_batches": (lambda value: fits(value, int), COUNTS_FETCHES),
    "val_check_interval": (lambda value: fits(value, int), COUNTS_FETCHES),
    "max_steps": (lambda value: value != -1, "Lightning checks it once per fetch, so it would overshoot"),
    "log_every_n_steps": (lambda value: True, "Lightning would count fetches, not optimizer steps"),
}
USE_DEFAULT = "remove perf=fast to use it (the default path is standard Lightning)"


def refuse(key: str, value: object, why: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not allowed with perf=fast: {why}; {USE_DEFAULT}")


def is_fast_module(cfg: DictConfig) -> bool:
    """Whether ``cfg`` trains with the ``perf=fast`` module."""
    from mnist_lit.perf.module import FastDigitClassifier

    target = OmegaConf.select(cfg, "module._target_")
    return bool(target) and issubclass(get_class(target), FastDigitClassifier)


def check_fast_config(cfg: DictConfig) -> None:
    """Refuse Trainer flags and callbacks that the fast path cannot honour; raises ConfigError."""
    steps = OmegaConf.select(cfg, "data.steps_per_fetch")
    if not fits(steps, int) or steps < 1:
        raise ConfigError(f"data.steps_per_fetch={steps!r} is not allowed: it must be an integer in [1, inf)")
    for flag, (refused, why) in REFUSED_FLAGS.items():
        value = OmegaConf.select(cfg, f"trainer.{flag}")
        if value is not None and refused(value):
            raise refuse(f"trainer.{flag}", value, why)
    for name, callback in (cfg.get("callbacks") or {}).items():
        if callback is not None and callback.get("_target_"):
            check_callback(f"callbacks.{name}", callback)


def check_callback(key: str, callback: DictConfig) -> None:
    """A callback whose per-batch hooks would see fetches instead of batches is refused."""
    cls = get_class(callback._target_)
    if issubclass(cls, ProgressBar) or getattr(cls, "handles_fetched_batches", False):
        return  # a bar counting fetches is still a bar; some callbacks are written for fetches
    if issubclass(cls, ModelCheckpoint):
        for option in ("every_n_train_steps", "train_time_interval"):
            if callback.get(option):
                raise refuse(f"{key}.{option}", callback.get(option), "it would count fetches, not batches")
        return
    hooks = [hook for hook in PER_BATCH_HOOKS if getattr(cls, hook, None) is not getattr(L.Callback, hook)]
    if hooks:
        raise refuse(f"{key}._target_", callback._target_, f"its {', '.join(hooks)} would run per fetch, not per batch")
