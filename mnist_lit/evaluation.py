"""``evaluate(cfg)``: a checkpoint's predictions on a split, scored by torchmetrics, then reported."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from mnist_lit.config import check_checkpoint, check_eval_config
from mnist_lit.data import NUM_CLASSES, normalize
from mnist_lit.errors import ConfigError
from mnist_lit.module import DigitClassifier, load_classifier

log = logging.getLogger(__name__)

SPLITS = ("test", "val")
AVERAGES = ("macro", "weighted")


@dataclass
class Predictions:
    """What a model made of one split: the uint8 images, their labels, and its softmax probabilities."""

    images: Tensor  # (N, 28, 28) uint8, as stored in the data module
    labels: Tensor  # (N,) int64
    probs: Tensor  # (N, 10) float32

    @property
    def predicted(self) -> Tensor:
        return self.probs.argmax(dim=1)


@dataclass
class Scores:
    """torchmetrics' figures for one split: per-class and averaged precision/recall/F1, confusion matrix."""

    confusion: Tensor  # (10, 10) counts, rows true, columns predicted
    per_class: dict[str, Tensor]  # precision, recall, f1-score: (10,) each
    averages: dict[str, dict[str, float]]  # "macro avg" / "weighted avg" -> precision, recall, f1-score
    accuracy: float

    @property
    def support(self) -> Tensor:
        return self.confusion.sum(dim=1)

    def top_confusions(self, k: int) -> list[dict[str, int]]:
        """The ``k`` largest off-diagonal cells, largest first: ``{"true": 4, "predicted": 9, "count": 21}``."""
        off = self.confusion.clone()
        off.fill_diagonal_(0)
        counts, flat = off.flatten().sort(descending=True, stable=True)
        return [
            {"true": int(i) // NUM_CLASSES, "predicted": int(i) % NUM_CLASSES, "count": int(c)}
            for c, i in zip(counts[:k], flat[:k], strict=True)
            if c > 0
        ]

    def as_dict(self) -> dict[str, Any]:
        """The classification report as plain values, in scikit-learn's layout (digits as keys)."""
        report: dict[str, Any] = {
            str(digit): {
                **{name: float(values[digit]) for name, values in self.per_class.items()},
                "support": int(self.support[digit]),
            }
            for digit in range(NUM_CLASSES)
        }
        report["accuracy"] = self.accuracy
        total = int(self.support.sum())
        for name, values in self.averages.items():
            report[name] = {**values, "support": total}
        return report


def score(labels: Tensor, predicted: Tensor) -> Scores:
    """Per-class and averaged precision, recall, F1, the confusion matrix and accuracy, all from torchmetrics."""
    per_class, averages = {}, {f"{a} avg": {} for a in AVERAGES}
    for name, metric in (
        ("precision", MulticlassPrecision),
        ("recall", MulticlassRecall),
        ("f1-score", MulticlassF1Score),
    ):
        per_class[name] = metric(NUM_CLASSES, average=None)(predicted, labels)
        for average in AVERAGES:
            averages[f"{average} avg"][name] = float(metric(NUM_CLASSES, average=average)(predicted, labels))
    confusion = MulticlassConfusionMatrix(NUM_CLASSES)(predicted, labels)
    accuracy = float(MulticlassAccuracy(NUM_CLASSES, average="micro")(predicted, labels))
    # The same figure two ways: a disagreement would mean a metric is configured wrongly.
    trace_ratio = float(confusion.trace()) / float(confusion.sum())
    if abs(trace_ratio - accuracy) > 1e-6:
        raise RuntimeError(f"accuracy {accuracy} != confusion matrix trace/total {trace_ratio}")
    return Scores(confusion=confusion, per_class=per_class, averages=averages, accuracy=accuracy)


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


@dataclass
class Run:
    """A training run as evaluation needs it: its directory, composed config and the checkpoint to evaluate."""

    run_dir: Path
    config: DictConfig
    ckpt_path: Path


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
    # Imported here: train.py imports this module, and matplotlib need not load unless a report is written.
    from mnist_lit.report import check_report_dir, read_metrics, write_report

    check_eval_config(cfg, SPLITS)
    run = locate_run(cfg.run_dir, cfg.ckpt_path)
    check_checkpoint(str(run.ckpt_path), run.config.model.arch)
    report_dir = Path(cfg.report_dir).expanduser().absolute() if cfg.report_dir else run.run_dir / "report"
    check_report_dir(report_dir, cfg.report_dir or str(report_dir))
    if (run.run_dir / "metrics.json").is_file():
        read_metrics(run.run_dir / "metrics.json")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_classifier(str(run.ckpt_path), map_location=device)
    datamodule = load_data(run)
    loader = datamodule.val_dataloader() if cfg.split == "val" else datamodule.test_dataloader()
    precision = OmegaConf.select(run.config, "trainer.precision", default="32-true")
    predictions = predict_batches(model, loader, precision)
    scores = score(predictions.labels, predictions.predicted)
    log.info(
        "%s: %s split, %d images, accuracy %.4f", run.ckpt_path, cfg.split, len(predictions.labels), scores.accuracy
    )
    return write_report(cfg, run, datamodule, predictions, scores, report_dir)
