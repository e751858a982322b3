"""The one place where a composed config is checked before anything runs.

Types and ranges are declared in dataclasses (the networks' own, ``TrainSettings``, ``DataSettings``,
``OptimizerSettings``, the commands' ``EvalSettings`` and ``PredictSettings``) and checked by
``mnist_lit.config.schema.typed``; what is checked here by hand is what no declaration can say: conditions
between keys and with the environment (files, devices, checkpoints).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.accelerators import AcceleratorRegistry
from omegaconf import DictConfig, OmegaConf

from mnist_lit.config.resolvers import PROJECT_ROOT
from mnist_lit.config.schema import setting, typed
from mnist_lit.data.acquire import data_dir_error, idx_count
from mnist_lit.data.augment import AUGMENTATIONS
from mnist_lit.data.dataset import load_dataset
from mnist_lit.errors import ConfigError
from mnist_lit.io.atomic import unwritable_reason
from mnist_lit.models.base import network_class, network_config, network_shape
from mnist_lit.perf.checks import check_fast_config, is_fast_module
from mnist_lit.precision import AUTO

TRAIN_IMAGES = 60_000  # the official training images of MNIST and its kin (when the files are not there to count)


@dataclasses.dataclass(kw_only=True)
class TrainSettings:
    """conf/train.yaml's own keys (the groups have their own dataclasses)."""

    seed: int = setting(low=0, high=2**32 - 1)
    ckpt_path: str | None = None
    run_name: str = ""
    evaluate_after_fit: bool = False
    optimized_metric: str | None = None


@dataclasses.dataclass(kw_only=True)
class DataSettings:
    """The data group's keys that every data module has (conf/data/)."""

    dataset: str = "mnist"
    data_dir: str = ""
    batch_size: int = setting(low=1)
    eval_batch_size: int = setting(low=1)
    val_fraction: float = setting(low=0, high=1, low_open=True, high_open=True)
    split_seed: int = setting(low=0, high=2**63 - 1)
    num_workers: int = setting(low=0)
    pin_memory: bool = False
    on_device: bool = False


@dataclasses.dataclass(kw_only=True)
class OptimizerSettings:
    """What every optimizer config must get right; an optimizer's other arguments are its own."""

    lr: float = setting(low=0, low_open=True)
    weight_decay: float = setting(0.0, low=0)


@dataclasses.dataclass(kw_only=True)
class TrainerSettings:
    """The trainer keys the project relies on; the others are ``lightning.Trainer``'s own."""

    max_epochs: int = setting(low=1)


@dataclasses.dataclass(kw_only=True)
class EvalSettings:
    """conf/eval.yaml (``split`` is checked against the splits evaluation offers)."""

    run_dir: str | None = None
    ckpt_path: str | None = None
    ckpt_paths: list[str] | None = None
    split: str = "test"
    tta: bool = False
    report_dir: str | None = None
    misclassified: int = setting(low=1)
    samples: int = setting(low=1)
    top_confusions: int = setting(low=1)
    tensorboard: bool = True


@dataclasses.dataclass(kw_only=True)
class PredictSettings:
    """conf/predict.yaml (``images`` is a path or a list of paths, checked when they are read)."""

    ckpt_path: str | None = None
    invert: str = "auto"
    top_k: int = setting(low=1, high=10)
    min_confidence: float = setting(low=0, high=1)
    verbose: bool = False
    output: str | None = None


def lightning_precisions() -> list[str]:
    """The ``precision`` values that ``lightning.Trainer`` accepts, read from its signature."""
    found: list[str] = []

    def walk(annotation: Any) -> None:
        if typing.get_origin(annotation) is typing.Literal:
            found.extend(str(arg) for arg in typing.get_args(annotation))
        for arg in typing.get_args(annotation):
            if typing.get_origin(arg) is not None:
                walk(arg)

    walk(typing.get_type_hints(L.Trainer.__init__)["precision"])
    # Lightning's full names first (32-true, ...), then its short aliases (32, bf16, ...)
    return sorted(dict.fromkeys(found), key=lambda name: ("-" not in name, name != "32-true"))


def lightning_accelerators() -> list[str]:
    """The ``accelerator`` names that Lightning knows (``auto`` and ``gpu`` choose among them)."""
    return ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]


def check_config(cfg: DictConfig) -> None:
    """Reject a config that cannot work, before any download or training; raises ConfigError."""
    typed(cfg, TrainSettings, "", open_keys=True)
    typed(cfg.data, DataSettings, "data", open_keys=True)
    typed(cfg.optimizer, OptimizerSettings, "optimizer", open_keys=True)
    check_run_name(cfg.get("run_name"))
    check_trainer(cfg)
    augment = OmegaConf.select(cfg, "data.augment", default=None)
    if augment is not None and augment not in AUGMENTATIONS:
        raise ConfigError(f"data.augment={augment!r} is not allowed: choose null (none), {' or '.join(AUGMENTATIONS)}")
    check_model(cfg.model)
    if is_fast_module(cfg):
        steps = OmegaConf.select(cfg, "data.steps_per_fetch")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"data.steps_per_fetch={steps!r} is not allowed: it must be an integer in [1, inf)")
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
    typed(cfg.trainer, TrainerSettings, "trainer", open_keys=True)
    precision = OmegaConf.select(cfg, "trainer.precision", default="32-true")
    precisions = lightning_precisions()
    if str(precision) not in (AUTO, *precisions):
        raise ConfigError(
            f"trainer.precision={precision!r} is not allowed: choose {AUTO} or one of {', '.join(precisions)}"
        )
    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default="auto")
    accelerators = lightning_accelerators()
    if accelerator not in accelerators:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} is not allowed: choose one of {', '.join(accelerators)}"
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
    dataset = load_dataset(data.get("dataset", "mnist"))
    raw = dataset.raw_dir(Path(str(data.data_dir)).expanduser())
    names = list(data.get("checksums") or dataset.files)
    if not all((raw / name).is_file() for name in names):
        reason = unwritable_reason(raw)
        if reason:
            raise data_dir_error(data.data_dir, reason, raw, dataset)
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
    shape, wanted = network_shape(saved["model"]), network_shape(cfg.model)
    different = [
        f"model.{key}={wanted[key]!r} but the checkpoint has {value!r}"
        for key, value in shape.items()
        if value != wanted.get(key)
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
    if "current_model_state" in checkpoint and not OmegaConf.select(cfg, "callbacks.averaging"):
        # its weights are the average: resuming without averaging would train on from the average
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} was saved with weight averaging, but this run has none: resume with the "
            "callbacks/averaging=... it was trained with (see its run's .hydra/overrides.yaml)"
        )
    done = int(checkpoint.get("epoch", -1)) + 1
    if done >= cfg.trainer.max_epochs:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} already holds {done} completed epochs and trainer.max_epochs="
            f"{cfg.trainer.max_epochs}: nothing is left to train. Give trainer.max_epochs={done + 1} or more"
        )


def check_model(model: DictConfig | dict[str, Any]) -> None:
    """The model group: a network of this project, its settings checked against its own dataclass."""
    target = model.get("_target_")
    try:
        network_class(model)
    except (ImportError, AttributeError, TypeError, ValueError) as e:
        raise ConfigError(
            f"model._target_={target!r} is not allowed: it must name a network class of mnist_lit.models "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); choose a model with model=<name> "
            "(conf/model/)"
        ) from None
    network_config(model)


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
    typed(cfg, EvalSettings, "", open_keys=True)


def check_predict_config(cfg: DictConfig, inverts: tuple[str, ...]) -> None:
    """The predict config (conf/predict.yaml): a checkpoint, some images, sane options; raises ConfigError."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path is missing: give ckpt_path=<run directory>/checkpoints/best.ckpt")
    if not cfg.get("images"):
        raise ConfigError("images is missing: give images=<an image file, a folder of images, or [a.png,b.jpg]>")
    _choice(cfg, "invert", inverts)
    typed(cfg, PredictSettings, "", open_keys=True)
