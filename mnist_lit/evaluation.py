"""``evaluate(cfg)``: a checkpoint's predictions on a split, scored by torchmetrics, then reported."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from mnist_lit.config import check_checkpoint, check_eval_config
from mnist_lit.data import normalize
from mnist_lit.errors import ConfigError
from mnist_lit.module import DigitClassifier, load_classifier
from mnist_lit.report import check_report_dir, read_metrics, write_report
from mnist_lit.results import Predictions, Run, score

log = logging.getLogger(__name__)

SPLITS = ("test", "val")


def inference_device() -> torch.device:
    """Where evaluation and prediction run: the GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast that Lightning's ``precision`` setting applied during training and testing."""
    dtypes = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
    if str(precision) in dtypes:
        return torch.autocast(device.type, dtype=dtypes[str(precision)])
    return contextlib.nullcontext()


@torch.no_grad()
def classify(model: DigitClassifier, images: Tensor, precision: str = "32-true") -> Tensor:
    """Softmax probabilities (N, 10) for uint8 (N, 28, 28) images, normalised as the data module does after transfer."""
    model.eval()
    with autocast(precision, model.device):
        logits = model(normalize(images.to(model.device)))
    return logits.float().softmax(dim=1).cpu()


def predict_batches(model: DigitClassifier, batches: Iterable[tuple[Tensor, Tensor]], precision: str) -> Predictions:
    """Run ``model`` over a dataloader's uint8 (images, labels) batches; keep all three for the report."""
    images, labels, probs = [], [], []
    for x, y in batches:
        images.append(x.cpu())
        labels.append(y.cpu())
        probs.append(classify(model, x, precision))
    return Predictions(torch.cat(images), torch.cat(labels).long(), torch.cat(probs))


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
    try:
        config = OmegaConf.load(config_file)
        config.model.arch  # noqa: B018  (the one key evaluation cannot do without)
    except Exception as e:  # YAML errors, a list instead of a mapping, a missing key: one message for all
        raise ConfigError(
            f"{key}={value!r} is not allowed: {config_file} cannot be read as a training run's config "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        ) from e
    return Run(run_dir=directory, config=config, ckpt_path=ckpt)


def load_data(run: Run) -> L.LightningDataModule:
    """The run's own data module (same files, same seeded split), every split set up (the report shows all)."""
    datamodule = instantiate(run.config.data)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` (or ``cfg.run_dir``'s best checkpoint) on ``cfg.split``; write the report."""
    check_eval_config(cfg, SPLITS)
    run = locate_run(cfg.run_dir, cfg.ckpt_path)
    check_checkpoint(str(run.ckpt_path), run.config.model.arch)
    report_dir = Path(cfg.report_dir).expanduser().absolute() if cfg.report_dir else run.run_dir / "report"
    check_report_dir(report_dir, cfg.report_dir or str(report_dir))
    if (run.run_dir / "metrics.json").is_file():
        read_metrics(run.run_dir / "metrics.json")

    model = load_classifier(str(run.ckpt_path), map_location=inference_device())
    datamodule = load_data(run)
    loader = datamodule.val_dataloader() if cfg.split == "val" else datamodule.test_dataloader()
    precision = OmegaConf.select(run.config, "trainer.precision", default="32-true")
    predictions = predict_batches(model, loader, precision)
    scores = score(predictions.labels, predictions.predicted)
    log.info(
        "%s: %s split, %d images, accuracy %.4f", run.ckpt_path, cfg.split, len(predictions.labels), scores.accuracy
    )
    return write_report(cfg, run, datamodule, predictions, scores, report_dir)
