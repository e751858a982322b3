"""Config resolvers and the one place where a composed config is checked before anything runs."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mnist_lit.config.resolvers import PROJECT_ROOT
from mnist_lit.data.acquire import RAW_FILES, data_dir_error, idx_count, raw_dir
from mnist_lit.data.augment import AUGMENTATIONS
from mnist_lit.errors import ConfigError
from mnist_lit.io.atomic import unwritable_reason
from mnist_lit.models import ARCHITECTURES, feature_map_sizes
from mnist_lit.perf.checks import check_fast_config, is_fast_module

TRAIN_IMAGES = 60_000  # MNIST's official training images (when the files are not there yet to count)
# Lightning's precision settings; the short forms are its older names.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "32", "16", "bf16", "64")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# The model settings that decide the weights' shapes: a checkpoint resumes only with the same ones.
SHAPE_KEYS = {
    "mlp": ("hidden", "layers"),
    "cnn": ("filters", "blocks", "kernel_size", "dense", "convs_per_block", "batch_norm", "global_pool"),
}
# What checkpoints saved before these keys existed were built with.
SHAPE_DEFAULTS = {"layers": 1, "convs_per_block": 1, "batch_norm": False, "global_pool": False}


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
        ok = (
            math.isfinite(value)
            and (value > low if low_open else value >= low)
            and (high is None or (value < high if high_open else value <= high))
        )
    if not ok:
        lo = f"{'(' if low_open else '['}{low}"
        hi = f"{high}{')' if high_open else ']'}" if high is not None else "inf)"
        raise ConfigError(f"{key}={value!r} is not allowed: it must be {kind} in {lo}, {hi}")


def _boolean(cfg: DictConfig, key: str) -> None:
    """``key`` must be true or false; raises ConfigError naming the key and the value."""
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not allowed: it must be true or false")


def check_config(cfg: DictConfig) -> None:
    """Reject a config that cannot work, before any download or training; raises ConfigError."""
    _number(cfg, "data.val_fraction", low=0, high=1, low_open=True, high_open=True)
    _number(cfg, "data.batch_size", low=1, integer=True)
    _number(cfg, "data.eval_batch_size", low=1, integer=True)
    _number(cfg, "data.num_workers", low=0, integer=True)
    _number(cfg, "data.split_seed", low=0, high=2**63 - 1, integer=True)
    _number(cfg, "optimizer.lr", low=0, low_open=True)
    _number(cfg, "trainer.max_epochs", low=1, integer=True)
    _number(cfg, "seed", low=0, high=2**32 - 1, integer=True)
    check_run_name(cfg.get("run_name"))
    check_trainer(cfg)
    augment = OmegaConf.select(cfg, "data.augment", default=None)
    if augment is not None and augment not in AUGMENTATIONS:
        raise ConfigError(f"data.augment={augment!r} is not allowed: choose null (none), {' or '.join(AUGMENTATIONS)}")
    check_model(cfg.model)
    if is_fast_module(cfg):
        _number(cfg, "data.steps_per_fetch", low=1, integer=True)
        check_fast_config(cfg)
    check_data(cfg)
    if cfg.get("ckpt_path"):
        check_resume(cfg)


def check_run_name(name: Any) -> None:
    """``run_name`` names one folder: not empty, no path separators, not ``.`` or ``..``."""
    text = str(name) if name is not None else ""
    if not text or text in (".", "..") or Path(text).name != text or "\\" in text:
        raise ConfigError(
            f"run_name={name!r} is not allowed: it names one folder of logs/runs/, so it must be a plain name "
            "(letters, digits, _ - .), without / or \\"
        )


def check_trainer(cfg: DictConfig) -> None:
    """A precision and accelerator that Lightning knows (and that this machine has); epochs that keep batches."""
    precision = OmegaConf.select(cfg, "trainer.precision", default="32-true")
    if str(precision) not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r} is not allowed: choose one of {', '.join(PRECISIONS)}")
    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default="auto")
    if accelerator not in ACCELERATORS:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} is not allowed: choose one of {', '.join(ACCELERATORS)}"
        )
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        mps = getattr(torch.backends, "mps", None)
        if accelerator == "cuda" or mps is None or not mps.is_available():
            raise ConfigError(
                f"trainer.accelerator={accelerator} is not allowed: this machine has no GPU that torch can use. "
                "Use trainer=cpu (or trainer.accelerator=auto, which picks the GPU where there is one)"
            )


def _limit(cfg: DictConfig, key: str, batches: int) -> None:
    """``trainer.limit_*_batches``: a fraction in (0, 1] or a count >= 1, and at least one batch either way."""
    value = OmegaConf.select(cfg, key, default=1.0)
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value <= 0 or (isinstance(value, float) and value > 1):
        raise ConfigError(
            f"{key}={value!r} is not allowed: give a fraction of the epoch in (0, 1.0] or a number of batches >= 1"
        )
    if isinstance(value, float) and int(value * batches) < 1:
        raise ConfigError(
            f"{key}={value!r} leaves no batch: the epoch has {batches} batches, so a fraction must be at least "
            f"{1 / batches:.3g} (or give a number of batches, e.g. {key}=1)"
        )


def check_data(cfg: DictConfig) -> None:
    """A data folder that holds MNIST or can receive it, and splits and batches that are not empty."""
    data = cfg.data
    raw = raw_dir(Path(str(data.data_dir)).expanduser())
    names = list(data.get("checksums") or RAW_FILES)
    if not all((raw / name).is_file() for name in names):
        reason = unwritable_reason(raw)
        if reason:
            raise data_dir_error(data.data_dir, reason, raw)
    images = idx_count(raw / "train-labels-idx1-ubyte") or TRAIN_IMAGES
    val = round(images * data.val_fraction)
    if val == 0 or val == images:
        empty = "validation" if val == 0 else "training"
        raise ConfigError(
            f"data.val_fraction={data.val_fraction} leaves the {empty} split empty ({images} images, {val} for "
            f"validation): choose a fraction that keeps at least one image on each side, e.g. 0.2"
        )
    fetch = data.batch_size * OmegaConf.select(cfg, "data.steps_per_fetch", default=1)
    _limit(cfg, "trainer.limit_train_batches", -(-(images - val) // fetch))
    _limit(cfg, "trainer.limit_val_batches", -(-val // data.eval_batch_size))


def check_resume(cfg: DictConfig) -> None:
    """``ckpt_path`` resumes this run: same architecture and sizes, same scheduler, epochs left to train."""
    ckpt_path = cfg.ckpt_path
    checkpoint = check_checkpoint(ckpt_path, cfg.model.arch)
    saved = checkpoint["hyper_parameters"]
    saved_model = saved.get("model") or {}
    shape = {key: saved_model.get(key, SHAPE_DEFAULTS.get(key)) for key in SHAPE_KEYS[cfg.model.arch]}
    different = [
        f"model.{key}={cfg.model.get(key)!r} but the checkpoint has {value!r}"
        for key, value in shape.items()
        if value != cfg.model.get(key)
    ]
    if different:
        fix = " ".join(f"model.{key}={value}" for key, value in shape.items())
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} cannot be resumed with these settings: {'; '.join(different)}. "
            f"Resume with the checkpoint's sizes: {fix}"
        )
    had, has = bool(saved.get("scheduler")), bool(cfg.get("scheduler"))
    if had != has:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} was trained {'with' if had else 'without'} a learning-rate scheduler, "
            f"but {'this run sets one' if has else 'scheduler=null here'}: resume with the scheduler setting it was "
            "trained with (see its run's .hydra/overrides.yaml)"
        )
    done = int(checkpoint.get("epoch", -1)) + 1
    if done >= cfg.trainer.max_epochs:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} already holds {done} completed epochs and trainer.max_epochs="
            f"{cfg.trainer.max_epochs}: nothing is left to train. Give trainer.max_epochs={done + 1} or more"
        )


def check_model(model: DictConfig | dict[str, Any]) -> None:
    """The model group: a known architecture with sizes that work on 28x28 input."""
    arch = model.get("arch")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"model.arch={arch!r} is not allowed: choose one of {', '.join(ARCHITECTURES)}")
    cfg = OmegaConf.create({"model": dict(model)})
    if arch == "mlp":
        for key in ("hidden", "layers"):
            _number(cfg, f"model.{key}", low=1, integer=True)
        _number(cfg, "model.dropout", low=0, high=1, high_open=True)
    else:
        for key in ("filters", "blocks", "kernel_size", "dense", "convs_per_block"):
            _number(cfg, f"model.{key}", low=1, integer=True)
        for key in ("dropout", "block_dropout"):
            _number(cfg, f"model.{key}", low=0, high=1, high_open=True)
        for key in ("batch_norm", "global_pool"):
            _boolean(cfg, f"model.{key}")
        feature_map_sizes(model["blocks"], model["kernel_size"], convs_per_block=model["convs_per_block"])


def check_checkpoint(ckpt_path: str, arch: str | None = None) -> dict[str, Any]:
    """``ckpt_path`` must hold this project's checkpoint (of architecture ``arch``, if given); returns it."""
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} is not allowed: it is a folder. Give a .ckpt file, e.g. "
            "<run directory>/checkpoints/best.ckpt"
        )
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
    return checkpoint


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
    _boolean(cfg, "tta")
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
    _boolean(cfg, "verbose")
