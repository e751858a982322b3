"""``evaluate(cfg)``: a checkpoint's predictions on a split, scored by torchmetrics, then reported."""

from __future__ import annotations

import logging
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor

from mnist_lit.checkpoints import load_checkpoint, load_classifier
from mnist_lit.config.schema import typed
from mnist_lit.config.settings import EvalSettings, Split
from mnist_lit.data.augment import shifted_images
from mnist_lit.data.datamodule import ImageDataModule
from mnist_lit.data.dataset import ImageSpec
from mnist_lit.errors import ConfigError, describe
from mnist_lit.evaluation.inference import inference_device, predict_batches
from mnist_lit.evaluation.report import REPORT, write_report
from mnist_lit.evaluation.results import Run, score
from mnist_lit.interrupts import watch
from mnist_lit.io.readers import load_metrics, load_run_config

log = logging.getLogger(__name__)

# test_shifted: the official test images, each under a fixed, seeded shift, rotation, scale and stroke change.
SPLITS = typing.get_args(Split)


def locate_run(run_dir: str | None, ckpt_path: str | None) -> Run:
    """The run and checkpoint that ``run_dir`` / ``ckpt_path`` name; ConfigError with what to give otherwise."""
    if not run_dir and not ckpt_path:
        raise ConfigError(
            "run_dir and ckpt_path are both missing: give run_dir=<run directory> (evaluates its "
            "checkpoints/best.ckpt) or ckpt_path=<run directory>/checkpoints/<name>.ckpt"
        )
    if run_dir:
        directory = Path(run_dir).expanduser().resolve()
        key, value = "run_dir", run_dir
    else:
        ckpt = Path(ckpt_path).expanduser().resolve()
        directory = ckpt.parent.parent
        key, value = "ckpt_path", ckpt_path
        if ckpt.parent.name != "checkpoints":
            raise ConfigError(
                f"ckpt_path={ckpt_path!r} is not inside a run's checkpoints/ folder, so its data settings are "
                "unknown: add run_dir=<the run directory it was trained in>"
            )
    config_file = directory / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(
            f"{key}={value!r} is not allowed: {directory} is not a training run directory (no .hydra/config.yaml). "
            "Give the directory that train.py printed at the end of training."
        )
    if ckpt_path:
        ckpt = Path(ckpt_path).expanduser().resolve()
    else:
        ckpt = directory / "checkpoints" / "best.ckpt"
        if not ckpt.is_file():
            found = sorted(str(p) for p in (directory / "checkpoints").glob("*.ckpt"))
            if found:
                hint = f"pick one of its checkpoints with ckpt_path= ({', '.join(found)})"
            else:
                hint = "the run saved no checkpoint (it ended before its first validation); pick another run"
            raise ConfigError(f"run_dir={run_dir!r} has no checkpoints/best.ckpt: {hint}")
    config = load_run_config(config_file, f"{key}={value!r}")
    checkpoint = load_checkpoint(ckpt, config.model.arch)
    trained, run_data = checkpoint["hyper_parameters"].get("dataset", "mnist"), config.data.get("dataset")
    if trained != run_data:
        raise ConfigError(
            f"{key}={value!r} is not allowed: {ckpt} was trained with data.dataset={trained}, but its run's "
            f"{config_file} says data.dataset={run_data}: it is another run's. Give the run it was trained in"
        )
    if (directory / "metrics.json").exists():
        load_metrics(directory / "metrics.json", f"{key}={value!r}")
    return Run(run_dir=directory, config=config, ckpt_path=ckpt, checkpoint=checkpoint)


def spec_text(image_size: int, channels: int, classes: tuple[str, ...]) -> str:
    shown = ", ".join(classes[:3]) + (", ..." if len(classes) > 3 else "")
    return f"{image_size}x{image_size} images of {channels} channel(s) in {len(classes)} classes ({shown})"


def load_data(run: Run, data: DictConfig | None = None, models: list[tuple[Path, ImageSpec]] = ()) -> ImageDataModule:
    """The data module to evaluate on, every split set up (the report shows all): ``data`` (a data=<choice> of the
    command line), or the run's own (same files, same seeded split). Each of ``models`` (a checkpoint and its spec)
    must take its images and classes; ConfigError before any file is read otherwise."""
    named = "data" if data is not None else f"run_dir={str(run.run_dir)!r}"
    try:
        datamodule = instantiate(data if data is not None else run.config.data)
    except InstantiationException as e:  # the saved settings name no data module, or one it does not take
        raise ConfigError(
            f"{named} is not allowed: {'its' if data is not None else 'the'} data settings "
            f"{'' if data is not None else 'of its .hydra/config.yaml '}do not build a data module ({describe(e)})"
        ) from e
    have = (datamodule.image_size, datamodule.channels, tuple(datamodule.class_names))
    for ckpt_path, spec in models:
        takes = (spec.image_size, spec.channels, spec.class_names)
        if takes != have:
            raise ConfigError(
                f"{named} is not allowed: {ckpt_path} takes {spec_text(*takes)}, the data has {spec_text(*have)}. "
                "Give data=<the data set it was trained on>, or leave data out"
            )
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def split_batches(datamodule: ImageDataModule, split: str) -> Iterable[tuple[Tensor, Tensor]]:
    """The uint8 (images, labels) batches of ``split``; test_shifted transforms the test images, seeded."""
    if split != "test_shifted":
        return datamodule.eval_dataloader(split)
    batches = list(datamodule.eval_dataloader("test"))
    images = torch.cat([x.cpu() for x, _ in batches])
    shifted = shifted_images(images)  # the whole set at once: each image's parameters are the seed's draw
    sizes = [len(y) for _, y in batches]
    return list(zip(shifted.split(sizes), (y.cpu() for _, y in batches), strict=True))


def ensemble_runs(ckpt_paths: list[str]) -> list[Run]:
    """The run of each checkpoint in an ensemble; all must share the data settings the split depends on."""
    if not isinstance(ckpt_paths, (list, tuple, ListConfig)) or len(ckpt_paths) < 2:
        raise ConfigError(
            f"ckpt_paths={ckpt_paths!r} is not allowed: give two or more checkpoints, "
            "ckpt_paths=[<run>/checkpoints/best.ckpt,<run>/checkpoints/best.ckpt]"
        )
    runs = [locate_run(None, str(path)) for path in ckpt_paths]
    first = runs[0].config.data
    for run in runs[1:]:
        for key in ("dataset", "root", "path", "val_fraction", "split_seed"):  # one data set, one validation split
            if run.config.data.get(key) != first.get(key):
                raise ConfigError(
                    f"ckpt_paths: {run.ckpt_path} was trained with data.{key}={run.config.data.get(key)}, "
                    f"{runs[0].ckpt_path} with {first.get(key)}: an ensemble is evaluated on one data set and split"
                )
    return runs


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` (or ``cfg.run_dir``'s best checkpoint, or ``cfg.ckpt_paths``) on ``cfg.split``."""
    typed(cfg, EvalSettings, "", open_keys=True)
    ckpt_paths = cfg.get("ckpt_paths")
    if ckpt_paths:
        if cfg.run_dir or cfg.ckpt_path:
            raise ConfigError("ckpt_paths is an ensemble of its own: give it without run_dir and ckpt_path")
        members = ensemble_runs(ckpt_paths)
        first = members[0]
        run = Run(first.run_dir, first.config, first.ckpt_path, first.checkpoint, [m.ckpt_path for m in members])
        default_report = run.run_dir / "report_ensemble"
    else:
        members = [locate_run(cfg.run_dir, cfg.ckpt_path)]
        run = members[0]
        default_report = run.run_dir / "report"
    report_dir = Path(cfg.report_dir).expanduser().absolute() if cfg.report_dir else default_report
    REPORT.check(f"report_dir={cfg.report_dir or report_dir}", report_dir)
    watch(report_dir, "report")  # what an interruption's line says of it (mnist_lit.interrupts)

    models = [
        (
            load_classifier(member.ckpt_path, inference_device(), member.checkpoint),
            OmegaConf.select(member.config, "trainer.precision", default="32-true"),
        )
        for member in members
    ]
    specs = [(member.ckpt_path, model.spec) for member, (model, _) in zip(members, models, strict=True)]
    datamodule = load_data(run, cfg.get("data"), specs)
    predictions = predict_batches(models, split_batches(datamodule, cfg.split), tta=cfg.tta)
    scores = score(predictions.labels, predictions.predicted, datamodule.num_classes)
    what = f"ensemble of {len(members)}" if len(members) > 1 else str(run.ckpt_path)
    log.info(
        "%s%s: %s split, %d images, accuracy %.4f",
        what,
        " with TTA" if cfg.tta else "",
        cfg.split,
        len(predictions.labels),
        scores.accuracy,
    )
    return write_report(cfg, run, datamodule, predictions, scores, report_dir)
