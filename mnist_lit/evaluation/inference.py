"""The one inference path: a checkpoint's logits and probabilities for uint8 images, with the autocast it was
trained with; evaluation, TTA, ensembles, the shifted split and prediction all go through it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
from lightning.pytorch.plugins import MixedPrecision
from torch import Tensor

from mnist_lit.data.augment import tta_views
from mnist_lit.evaluation.results import Predictions
from mnist_lit.lit_module import DigitClassifier
from mnist_lit.precision import resolved


def inference_device() -> torch.device:
    """Where evaluation and prediction run: the GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast that Lightning's ``precision`` setting applied in training and testing: Lightning's own
    ``MixedPrecision`` for the ``-mixed`` settings; the others ran without autocast."""
    precision = resolved(str(precision), device)  # a run trained with trainer.precision=auto: chosen for this device
    if precision.endswith("-mixed"):
        return MixedPrecision(precision, device.type).forward_context()
    return contextlib.nullcontext()


@torch.no_grad()
def logits_of(model: DigitClassifier, images: Tensor, precision: str = "32-true", tta: bool = False) -> Tensor:
    """Float logits (N, classes) on the CPU for uint8 images (N, C, H, W), or (N, H, W) of one channel; with
    ``tta``, their mean over the TTA views. Normalised as the checkpoint's data module did after transfer."""
    model.eval()
    normalize = model.spec.normalize
    images = images.to(model.device)
    views = tta_views(images) if tta else [images]
    total = None
    with autocast(precision, model.device):
        for view in views:
            logits = model(normalize(view)).float().cpu()
            total = logits if total is None else total + logits
    return total / len(views)


def classify(model: DigitClassifier, images: Tensor, precision: str = "32-true", tta: bool = False) -> Tensor:
    """Softmax probabilities (N, classes) for uint8 images (``logits_of``), normalised as the model was trained."""
    return logits_of(model, images, precision, tta).softmax(dim=1)


def predict_batches(
    models: DigitClassifier | list[tuple[DigitClassifier, str]],
    batches: Iterable[tuple[Tensor, Tensor]],
    precision: str = "32-true",
    tta: bool = False,
) -> Predictions:
    """Run a model (or an ensemble of (model, precision) pairs, logits averaged) over uint8 (images, labels) batches."""
    members = models if isinstance(models, list) else [(models, precision)]
    images, labels, probs = [], [], []
    for x, y in batches:
        images.append(x.cpu())
        labels.append(y.cpu())
        logits = sum(logits_of(model, x, member_precision, tta) for model, member_precision in members)
        probs.append((logits / len(members)).softmax(dim=1))
    return Predictions(torch.cat(images), torch.cat(labels).long(), torch.cat(probs))
