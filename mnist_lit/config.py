"""Config resolvers and the one place where a composed config is checked before anything runs."""

from __future__ import annotations

import numbers
import os
import sys
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_lit.errors import ConfigError
from mnist_lit.models import ARCHITECTURES, feature_map_sizes

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def resume_dir(ckpt_path: str | None, default: str) -> str:
    """The run directory of ``<run>/checkpoints/<name>.ckpt``, so that a resumed run continues in place."""
    if ckpt_path:
        path = Path(ckpt_path).expanduser().resolve()
        if path.parent.name == "checkpoints":
            return str(path.parent.parent)
    return default


OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)
OmegaConf.register_new_resolver("resume_dir", resume_dir, replace=True)


def _number(
    cfg: DictConfig,
    key: str,
    *,
    low: float,
    high: float | None = None,
    integer: bool = False,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    value = OmegaConf.select(cfg, key)
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and integer:
        ok = isinstance(value, numbers.Integral)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high)
        )
    if not ok:
        lo = f"{'(' if low_open else '['}{low}"
        hi = f"{high}{')' if high_open else ']'}" if high is not None else "inf)"
        raise ConfigError(f"{key}={value!r} is not allowed: it must be {kind} in {lo}, {hi}")


def check_config(cfg: DictConfig) -> None:
    """Reject a config that cannot work, before any download or training; raises ConfigError."""
    _number(cfg, "data.val_fraction", low=0, high=1, low_open=True, high_open=True)
    _number(cfg, "data.batch_size", low=1, integer=True)
    _number(cfg, "data.steps_per_fetch", low=1, integer=True)
    _number(cfg, "data.eval_batch_size", low=1, integer=True)
    _number(cfg, "data.num_workers", low=0, integer=True)
    _number(cfg, "optimizer.lr", low=0, low_open=True)
    _number(cfg, "trainer.max_epochs", low=1, integer=True)
    _number(cfg, "seed", low=0, high=2**32 - 1, integer=True)
    check_model(cfg.model)
    if cfg.get("ckpt_path"):
        check_checkpoint(cfg.ckpt_path, cfg.model.arch)


def check_model(model: DictConfig | dict[str, Any]) -> None:
    """The model group: a known architecture with sizes that work on 28x28 input."""
    arch = model.get("arch")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"model.arch={arch!r} is not allowed: choose one of {', '.join(ARCHITECTURES)}")
    cfg = OmegaConf.create({"model": dict(model)})
    if arch == "mlp":
        _number(cfg, "model.hidden", low=1, integer=True)
    else:
        for key in ("filters", "blocks", "kernel_size", "dense"):
            _number(cfg, f"model.{key}", low=1, integer=True)
        _number(cfg, "model.dropout", low=0, high=1, high_open=True)
        feature_map_sizes(model["blocks"], model["kernel_size"])


def check_checkpoint(ckpt_path: str, arch: str | None = None) -> None:
    """``ckpt_path`` must exist and hold this project's checkpoint (of architecture ``arch``, if given)."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path!r} is not allowed: no such file. Give a .ckpt file of this project.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        saved = checkpoint["hyper_parameters"]["model"]["arch"]
    except Exception as e:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} is not allowed: it is not a checkpoint of this project "
            f"that loads with weights_only=True ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from e
    if arch is not None and saved != arch:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} holds a model.arch={saved!r} checkpoint, but model.arch={arch!r}: "
            f"add model={saved} (and the same model settings) to resume it"
        )


def unwritable_reason(directory: Path) -> str | None:
    """Why ``directory`` cannot be created or written to, or None if it can."""
    existing = directory
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


class OutputDirCheck(Callback):
    """A Hydra callback: an unwritable run or sweep directory is reported clearly before anything starts."""

    def _check(self, key: str, directory: str) -> None:
        reason = unwritable_reason(Path(directory).expanduser().absolute())
        if reason:
            print(
                f"Error: {key}={directory} cannot be used: {reason}. "
                f"Choose a writable place with {key}=... or paths.log_dir=...",
                file=sys.stderr,
            )
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check("hydra.sweep.dir", config.hydra.sweep.dir)


def command_config(name: str, **values: Any) -> DictConfig:
    """``conf/<name>.yaml``'s own settings with ``values`` set: a command's config, for callers outside its CLI.

    For flat configs (eval, predict) whose only defaults are Hydra's own settings.
    """
    cfg = OmegaConf.load(PROJECT_ROOT / "conf" / f"{name}.yaml")
    for key in ("defaults", "hydra"):
        cfg.pop(key, None)
    return OmegaConf.merge(cfg, values)


def _choice(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> None:
    value = OmegaConf.select(cfg, key)
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed: choose one of {', '.join(allowed)}")


def check_eval_config(cfg: DictConfig, splits: tuple[str, ...]) -> None:
    """The evaluate.py config (conf/eval.yaml): a known split and positive counts; raises ConfigError."""
    _choice(cfg, "split", splits)
    for key in ("misclassified", "samples", "top_confusions"):
        _number(cfg, key, low=1, integer=True)


def check_predict_config(cfg: DictConfig, inverts: tuple[str, ...]) -> None:
    """The predict config (conf/predict.yaml): a checkpoint, some images, sane options; raises ConfigError."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path is missing: give ckpt_path=<run directory>/checkpoints/best.ckpt")
    if not cfg.get("images"):
        raise ConfigError("images is missing: give images=<an image file, a folder of images, or [a.png,b.jpg]>")
    _choice(cfg, "invert", inverts)
    _number(cfg, "top_k", low=1, high=10, integer=True)
    _number(cfg, "min_confidence", low=0, high=1)
    if not isinstance(cfg.get("verbose"), bool):
        raise ConfigError(f"verbose={cfg.get('verbose')!r} is not allowed: it must be true or false")
