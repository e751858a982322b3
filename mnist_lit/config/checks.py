"""The conditions a composed config must meet that no declaration can say: between keys, and with the environment
(files, devices, memory, checkpoints). ``check_config`` runs them once per command, before anything is written;
what each setting is (its type and range) is declared in ``mnist_lit.config.settings`` and the networks' ``Config``,
and what a class named by ``_target_`` takes is its own signature (``mnist_lit.config.schema``).
"""

from __future__ import annotations

import importlib.util
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_lit.checkpoints import load_checkpoint, load_classifier
from mnist_lit.config.resolvers import PROJECT_ROOT, resumed_run
from mnist_lit.config.schema import built_or_refused, check_target, finite, fits, plain, resolved, shown, typed
from mnist_lit.config.settings import (
    DataSettings,
    OptimizerSettings,
    PathSettings,
    TrainerSettings,
    TrainSettings,
)
from mnist_lit.data.acquire import all_intact, data_dir_error
from mnist_lit.data.datamodule import IDXDataModule
from mnist_lit.errors import ConfigError, describe
from mnist_lit.io.atomic import name_error, unwritable_reason
from mnist_lit.io.readers import load_run_config
from mnist_lit.models.base import build_network, network_class, network_config, network_shape
from mnist_lit.perf.checks import check_fast_config, is_fast_module
from mnist_lit.precision import AUTO, precision_for

TRAIN_IMAGES = 60_000  # the official training images of MNIST and its kin (when the files are not there to count)


def check_config(cfg: DictConfig) -> L.LightningDataModule:
    """Reject a config that cannot work, before any download or training; raises ConfigError. ``cfg`` is resolved
    as the job will see it, so Hydra's settings (``${hydra:runtime.output_dir}``) must be those of the job."""
    values = resolved(cfg)
    typed(values, TrainSettings, "")
    typed(values["paths"], PathSettings, "paths")
    check_group(values["module"], "module", L.LightningModule)
    check_group(values["data"], "data")  # the data module's own signature, before its values are used
    typed(cfg.data, DataSettings, "data", open_keys=True)
    typed(cfg.optimizer, OptimizerSettings, "optimizer", open_keys=True)
    check_trainer(cfg)
    check_model(cfg.model)
    if is_fast_module(cfg):
        check_fast_config(cfg)
    datamodule = check_data(cfg)  # it refuses what it cannot read (a data.augment it does not know)
    check_groups(values, precision_for(cfg).precision)
    if cfg.get("ckpt_path"):
        check_resume(cfg)
    check_folds(datamodule)  # last: it reads the data and logs the split, which a refused resume must not
    return datamodule  # built once: training uses it


# Ranges of library settings that their type hints cannot say: {class: {argument: (low, high, low_open, high_open)}}.
LIBRARY_RANGES: dict[str, dict[str, tuple[float | None, float | None, bool, bool]]] = {
    "lightning.pytorch.Trainer": {
        "accumulate_grad_batches": (1, None, False, False),
        "val_check_interval": (0, None, True, False),
        "check_val_every_n_epoch": (1, None, False, False),
        "log_every_n_steps": (1, None, False, False),
        "gradient_clip_val": (0, None, False, False),
        "max_steps": (-1, None, False, False),
        "min_epochs": (0, None, False, False),
        "num_sanity_val_steps": (-1, None, False, False),
    },
    "lightning.pytorch.callbacks.EarlyStopping": {
        "patience": (0, None, False, False),
        "min_delta": (0, None, False, False),
    },
    "torch.optim.lr_scheduler.OneCycleLR": {
        "max_lr": (0, None, True, False),
        "pct_start": (0, 1, True, True),
        "div_factor": (0, None, True, False),
        "final_div_factor": (0, None, True, False),
    },
}
# Arguments of library classes that name a folder the class writes into (ModelCheckpoint's, the logger's).
FOLDERS = ("dirpath", "save_dir", "default_root_dir")
# What the module logs at the end of each validation: what early stopping and checkpoints can watch.
MONITORED = ("val/loss", "val/acc")
SCHEDULER_INTERVALS = ("step", "epoch")


def check_group(node: Any, key: str, base: type | None = None, skip: tuple[str, ...] = ()) -> Any:
    """A ``_target_`` group: its class's signature and type hints, and the ranges the project adds; its class
    (``base``: a subclass of it). ``skip``: keys the project reads itself."""
    if not isinstance(node, dict) or "_target_" not in node:
        raise ConfigError(f"{key}={shown(node)} is not allowed: it must be a group of settings with a _target_")
    cls = check_target(node, key, skip, LIBRARY_RANGES.get(str(node["_target_"])))
    if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{key}._target_={node['_target_']!r} is not allowed: it must name a {base.__name__}")
    for name in FOLDERS:  # a library writes into them only once training runs
        reason = isinstance(node.get(name), str) and unwritable_reason(Path(node[name]).expanduser())
        if reason:
            raise ConfigError(f"{key}.{name}={shown(node[name])} cannot be used: {reason}. Give a writable folder")
    return cls


def check_groups(values: dict[str, Any], precision: str) -> None:
    """Every ``_target_`` group against its class's signature (training builds each once, in
    ``mnist_lit.training.build``). ``precision``: what ``trainer.precision`` means on this machine."""
    check_group(values["optimizer"], "optimizer")
    scheduler = values.get("scheduler")
    if scheduler:
        check_group(scheduler, "scheduler", skip=("interval",))
        if scheduler.get("interval", "step") not in SCHEDULER_INTERVALS:
            raise ConfigError(f"scheduler.interval={shown(scheduler['interval'])} is not allowed: choose step or epoch")
    for group in ("callbacks", "logger"):
        nodes = values.get(group) or {}
        if not isinstance(nodes, dict):
            raise ConfigError(f"{group}={shown(nodes)} is not allowed: it must be a group of {group} settings")
        for name, node in nodes.items():
            if node is None:
                continue  # callbacks.<name>=null (logger.<name>=null) switches it off
            check_group(node, f"{group}.{name}")
            if group == "logger":
                check_logger_usable(node, f"logger.{name}")
            elif node.get("monitor") not in (None, *MONITORED):
                raise ConfigError(
                    f"callbacks.{name}.monitor={shown(node['monitor'])} is not allowed: the module logs "
                    f"{' and '.join(MONITORED)} at the end of each validation; choose one of them"
                )
    check_group({**values["trainer"], "precision": precision}, "trainer")  # trainer.precision=auto, as it applies


def check_logger_usable(node: dict[str, Any], key: str) -> None:
    """A logger's library is installed (wandb is not among the requirements), and an MLflow tracking server
    (``tracking_uri=http://...``) answers within seconds: MLflow's own client retries for minutes."""
    if node["_target_"] == "lightning.pytorch.loggers.WandbLogger" and importlib.util.find_spec("wandb") is None:
        raise ConfigError(f"{key} needs wandb, which is not installed: pip install wandb (or choose another logger)")
    uri = str(node.get("tracking_uri") or "")
    if urllib.parse.urlsplit(uri).scheme not in ("http", "https"):
        return
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1", timeout=3).close()
    except urllib.error.HTTPError:
        pass  # it answers (a server that wants credentials gets them from MLflow's client)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{key}.tracking_uri={uri!r} cannot be reached ({describe(e)}): start the MLflow tracking server it "
            "names, or choose another store (without MLFLOW_TRACKING_URI set, the default is a SQLite file in the "
            "log directory)"
        ) from None


def check_trainer(cfg: DictConfig) -> None:
    """Epochs to train, and a precision that keeps the weights float32 (which others Lightning knows, and which
    accelerators this machine has, the Trainer's own signature and its construction say)."""
    typed(cfg.trainer, TrainerSettings, "trainer", open_keys=True)
    precision = str(OmegaConf.select(cfg, "trainer.precision", default="32-true"))
    if (precision.endswith("-true") and precision != "32-true") or precision == "64":
        raise ConfigError(
            f"trainer.precision={precision!r} is not allowed: it casts the weights to another type, but the networks "
            f"get float32 images. Choose {AUTO}, 32-true, bf16-mixed or 16-mixed (mixed keeps float32 weights)"
        )


def _limit(cfg: DictConfig, key: str, batches: int | None, stage: str) -> int | None:
    """``trainer.limit_*_batches``: a fraction in (0, 1] or a count >= 1, and at least one batch of the ``batches``
    (None: not known before the data is read) either way, which ``stage`` needs; returns the batches it keeps."""
    value = OmegaConf.select(cfg, key, default=1.0)
    if not finite(value) or value <= 0 or (isinstance(value, float) and value > 1):
        raise ConfigError(
            f"{key}={value!r} is not allowed: give a fraction of the epoch in (0, 1.0] or a number of batches >= 1 "
            f"({stage} needs at least one)"
        )
    if batches is None:
        return None
    if isinstance(value, float) and int(value * batches) < 1:
        raise ConfigError(
            f"{key}={value!r} leaves no batch: the epoch has {batches} batches, so a fraction must be at least "
            f"{1 / batches:.3g} (or give a number of batches, e.g. {key}=1)"
        )
    return min(batches, value) if isinstance(value, int) else int(value * batches)


def check_data(cfg: DictConfig) -> L.LightningDataModule:
    """A data folder that holds the IDX files or can receive them (for the data sets that download), and splits
    and batches that are not empty, sized by the data module's ``num_train_images()``. The data module is built
    here as training builds it; that lists a folder's files or counts a table's lines, and decodes nothing."""
    data = cfg.data
    datamodule = built_or_refused("data", str(data._target_), lambda: instantiate(data))
    if isinstance(datamodule, IDXDataModule):
        raw = datamodule.dataset.raw_dir(datamodule.data_dir.expanduser())
        reason = name_error(raw)  # too long a name first: the files cannot be looked for under it
        if not reason and not all((raw / name).is_file() for name in datamodule.checksums):
            reason = unwritable_reason(raw)
        if reason:
            raise data_dir_error(data.data_dir, reason, raw, datamodule.dataset)
    images = datamodule.num_train_images() or TRAIN_IMAGES
    val = round(images * data.val_fraction)
    if val == 0 or val == images:
        empty = "validation" if val == 0 else "training"
        raise ConfigError(
            f"data.val_fraction={data.val_fraction} leaves the {empty} split empty ({images} images, {val} for "
            f"validation): choose a fraction that keeps at least one image on each side, e.g. 0.2"
        )
    fetch = data.batch_size * OmegaConf.select(cfg, "data.steps_per_fetch", default=1)
    epoch = _limit(cfg, "trainer.limit_train_batches", -(-(images - val) // fetch), "training")
    _limit(cfg, "trainer.limit_val_batches", -(-val // data.eval_batch_size), "the validation best.ckpt watches")
    _limit(cfg, "trainer.limit_test_batches", None, "the test of best.ckpt after training")
    interval = OmegaConf.select(cfg, "trainer.val_check_interval", default=None)
    every = OmegaConf.select(cfg, "trainer.check_val_every_n_epoch", default=1)
    if fits(interval, int) and every is not None and interval > epoch:
        raise ConfigError(  # Lightning would refuse it only once the fit has started
            f"trainer.val_check_interval={interval} is not allowed: an epoch has {epoch} training batches here "
            f"({images - val} images in batches of {fetch}, trainer.limit_train_batches="
            f"{OmegaConf.select(cfg, 'trainer.limit_train_batches', default=1.0)}): give at most {epoch}, a fraction "
            "of the epoch in (0, 1.0], or trainer.check_val_every_n_epoch=null to count batches across epochs"
        )
    return datamodule


def check_folds(datamodule: L.LightningDataModule) -> None:
    """k-fold cross-validation (``cv=kfold``): whether every fold can hold each class only the labels say, so the
    data is read here, before a sweep's first job, where it is at hand (the data module keeps it for training);
    data still to be downloaded is checked by the data module as it reads it."""
    if getattr(datamodule, "folds", None) is None:
        return
    if isinstance(datamodule, IDXDataModule):
        raw = datamodule.dataset.raw_dir(datamodule.data_dir.expanduser())
        if not all_intact(raw, datamodule.checksums):
            return
    datamodule.splits()


# What a resume keeps of its run's data: the data set and the data module, a folder's ``root`` or a table's ``path``,
# the training/validation split and a cross-validation's folds (data.folds and data.fold follow cv.folds and cv.fold).
SPLIT_KEYS = ("dataset", "_target_", "root", "path", "val_fraction", "split_seed", "folds", "fold")


def kept_by_resume(model: Any, optimizer: dict, scheduler: bool, averaging: bool, data: dict) -> dict[str, Any]:
    """What a resume goes on with as its run was trained, by the key the command line sets (True or False: with or
    without the group): the weights' shapes, the optimizer (Lightning restores its state, its lr and other settings
    included, so a new value would not be used), whether there is a scheduler and weight averaging (restored too),
    and the training and validation images."""
    kept = {f"model.{key}": value for key, value in network_shape(model).items()}
    kept |= {f"optimizer.{key}": value for key, value in optimizer.items()}
    kept |= {"scheduler": scheduler, "callbacks/averaging": averaging}
    split = {key: data[key] for key in SPLIT_KEYS if key in data}
    if split.get("folds") is None:
        split.pop("fold", None)  # the val_fraction split: no fold is used
    return kept | {f"cv.{k}" if k in ("folds", "fold") else f"data.{k}": v for k, v in split.items()}


def said(key: str, value: Any) -> str:
    """A kept setting as the command line sets it: ``with model.hidden=128``, ``without scheduler``."""
    if isinstance(value, bool):
        return f"{'with' if value else 'without'} {key}"
    return "with " + (
        "cv=null" if key == "cv.folds" and value is None else f"{key}={'null' if value is None else value}"
    )


def check_resume(cfg: DictConfig) -> None:
    """``ckpt_path`` resumes its run as it was trained (``kept_by_resume``: from the checkpoint and its run's
    .hydra/config.yaml, next to checkpoints/, where there is one), from finite weights that fit, with epochs left."""
    named = f"ckpt_path={cfg.ckpt_path!r}"
    checkpoint = load_checkpoint(cfg.ckpt_path, cfg.model.arch, resume=True)
    saved = checkpoint["hyper_parameters"]
    data, run = {"dataset": saved.get("dataset", "mnist")}, resumed_run(cfg.ckpt_path)
    if run is not None and (run / ".hydra" / "config.yaml").exists():
        run_data = plain(load_run_config(run / ".hydra" / "config.yaml", named).data)
        data |= {key: run_data.get(key) for key in SPLIT_KEYS if key in run_data or key in cfg.data}
    averaged, asked = "current_model_state" in checkpoint, {key: plain(cfg.data.get(key)) for key in data}
    trained = kept_by_resume(saved["model"], saved["optimizer"], bool(saved.get("scheduler")), averaged, data)
    averaging = bool(OmegaConf.select(cfg, "callbacks.averaging"))
    now = kept_by_resume(cfg.model, plain(cfg.optimizer), bool(cfg.get("scheduler")), averaging, asked)
    changed = [key for key in {**trained, **now} if trained.get(key) != now.get(key)]
    if changed:
        given, theirs = (", ".join(said(key, kept.get(key)) for key in changed) for kept in (now, trained))
        pairs = [said(k, trained.get(k)).removeprefix("with ") for k in changed if not isinstance(trained.get(k), bool)]
        fix = " ".join(["cv=kfold"] * bool(trained.get("cv.folds") and not now.get("cv.folds")) + pairs)
        raise ConfigError(
            f"{named} cannot be resumed {given}: it was trained {theirs}, and a resume goes on as its run "
            "was trained (the network's sizes, the optimizer's state and settings, the scheduler, weight averaging, "
            f"the training and validation images). Resume with {fix or 'the same settings'} (its run's "
            ".hydra/overrides.yaml lists them), or start a new run"
        )
    load_classifier(cfg.ckpt_path, checkpoint=checkpoint)  # its weights fit the network its settings build
    done = checkpoint.get("epoch", -1) + 1
    if done >= cfg.trainer.max_epochs:
        raise ConfigError(
            f"{named} already holds {done} completed epochs and trainer.max_epochs="
            f"{cfg.trainer.max_epochs}: nothing is left to train. Give trainer.max_epochs={done + 1} or more"
        )


def check_model(model: DictConfig | dict[str, Any]) -> None:
    """The model group: a network of this project, its settings checked against its own dataclass."""
    try:
        network_class(model)
    except (ImportError, AttributeError, TypeError, ValueError) as e:
        raise ConfigError(
            f"model._target_={model.get('_target_')!r} is not allowed: it must name a network class of "
            f"mnist_lit.models ({describe(e)}); choose a model with model=<name> (conf/model/)"
        ) from None
    network_config(model)
    check_network_size(model)


# Bytes a parameter takes while training with Adam: the weight, its gradient and the two moment estimates.
TRAINING_BYTES_PER_PARAMETER = 4 * 4


def machine_memory() -> int:
    """Bytes of memory of this machine (of its first GPU, where training would use one)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_network_size(model: DictConfig | dict[str, Any]) -> None:
    """The network builds (on torch's meta device: no memory used) and its training state fits this machine."""
    try:
        with torch.device("meta"):
            network = build_network(plain(model))
    except (ValueError, TypeError, RuntimeError) as e:
        raise ConfigError(
            f"model cannot be built with these settings ({describe(e)}): change the model's sizes"
        ) from None
    parameters = sum(p.numel() for p in network.parameters())
    need, have = parameters * TRAINING_BYTES_PER_PARAMETER, machine_memory()
    if need > have:
        raise ConfigError(
            f"model has {parameters:,} parameters: training it needs about {need / 2**30:.1f} GiB for weights, "
            f"gradients and optimizer state, more than this machine's {have / 2**30:.1f} GiB. Choose smaller sizes"
        )


def command_config(name: str, **values: Any) -> DictConfig:
    """``conf/<name>.yaml``'s own settings with ``values`` set: a command's config, for callers outside its CLI.

    For flat configs (eval, predict) whose only defaults are Hydra's own settings.
    """
    cfg = OmegaConf.load(PROJECT_ROOT / "conf" / f"{name}.yaml")
    for key in ("defaults", "hydra"):
        cfg.pop(key, None)
    return OmegaConf.merge(cfg, values)
