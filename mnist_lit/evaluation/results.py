"""What an evaluation works with: the run, a model's predictions on a split, and torchmetrics' scores of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch import Tensor
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

AVERAGES = ("macro", "weighted")


@dataclass
class Run:
    """A training run as evaluation needs it: its directory, composed config and the checkpoint to evaluate."""

    run_dir: Path
    config: DictConfig
    ckpt_path: Path
    checkpoint: dict[str, Any]  # as load_checkpoint read and checked it
    ensemble: list[Path] = field(default_factory=list)  # every checkpoint averaged, when there are several


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
        classes = len(self.confusion)
        off = self.confusion.clone()
        off.fill_diagonal_(0)
        counts, flat = off.flatten().sort(descending=True, stable=True)
        return [
            {"true": int(i) // classes, "predicted": int(i) % classes, "count": int(c)}
            for c, i in zip(counts[:k], flat[:k], strict=True)
            if c > 0
        ]

    def as_dict(self) -> dict[str, Any]:
        """The classification report as plain values, in scikit-learn's layout (class indices as keys)."""
        report: dict[str, Any] = {
            str(digit): {
                **{name: float(values[digit]) for name, values in self.per_class.items()},
                "support": int(self.support[digit]),
            }
            for digit in range(len(self.confusion))
        }
        report["accuracy"] = self.accuracy
        total = int(self.support.sum())
        for name, values in self.averages.items():
            report[name] = {**values, "support": total}
        return report


def score(labels: Tensor, predicted: Tensor, num_classes: int = 10) -> Scores:
    """Per-class and averaged precision, recall, F1, the confusion matrix and accuracy, all from torchmetrics."""
    per_class, averages = {}, {f"{a} avg": {} for a in AVERAGES}
    for name, metric in (
        ("precision", MulticlassPrecision),
        ("recall", MulticlassRecall),
        ("f1-score", MulticlassF1Score),
    ):
        per_class[name] = metric(num_classes, average=None)(predicted, labels)
        for average in AVERAGES:
            averages[f"{average} avg"][name] = float(metric(num_classes, average=average)(predicted, labels))
    confusion = MulticlassConfusionMatrix(num_classes)(predicted, labels)
    accuracy = float(MulticlassAccuracy(num_classes, average="micro")(predicted, labels))
    # The same figure two ways: a disagreement would mean a metric is configured wrongly.
    trace_ratio = float(confusion.trace()) / float(confusion.sum())
    if abs(trace_ratio - accuracy) > 1e-6:
        raise RuntimeError(f"accuracy {accuracy} != confusion matrix trace/total {trace_ratio}")
    return Scores(confusion=confusion, per_class=per_class, averages=averages, accuracy=accuracy)
