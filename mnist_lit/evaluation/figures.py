"""The report's figures: the confusion matrix, an image grid, the learning curves, the class balance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from mnist_lit.data.augment import build_augmentation

CURVES = ("loss", "acc")


def confusion_figure(confusion: Tensor, title: str, classes: Sequence[str]) -> Figure:
    """An annotated heatmap of counts, rows true, columns predicted; a log colour scale keeps small cells visible."""
    counts = confusion.numpy()
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(counts + 1, cmap="Blues", norm=LogNorm(vmin=1, vmax=counts.max() + 1))
    fig.colorbar(image, ax=ax, label="count + 1 (log scale)")
    threshold = np.sqrt(counts.max() + 1)  # the colour scale's midpoint, where the text turns white
    for (row, col), count in np.ndenumerate(counts):
        if count:
            color = "white" if count + 1 > threshold else ("firebrick" if row != col else "black")
            ax.text(col, row, str(count), ha="center", va="center", fontsize=8, color=color)
    ticks = range(len(classes))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(
        classes,
        rotation=45 if max(map(len, classes)) > 2 else 0,
        ha="right" if max(map(len, classes)) > 2 else "center",
    )
    ax.set_yticklabels(classes)
    return fig


def image_grid(images: Tensor, titles: list[str], columns: int, title: str) -> Figure:
    """uint8 images (N, C, H, W) or (N, H, W) in a grid, each with a short caption; one channel is drawn dark on
    light, three as RGB."""
    if images.dim() == 4:  # (N, H, W, C), as matplotlib draws colour; (N, H, W) for one channel
        images = images[:, 0] if images.shape[1] == 1 else images.permute(0, 2, 3, 1)
    rows = max(1, -(-len(images) // columns))
    fig = Figure(figsize=(columns * 1.25, rows * 1.45 + 0.4), layout="constrained")
    fig.suptitle(title)
    for i, ax in enumerate(fig.subplots(rows, columns, squeeze=False).flat):
        ax.set_axis_off()
        if i < len(images):
            if images.dim() == 4:
                ax.imshow(images[i].numpy())
            else:
                ax.imshow(images[i].numpy(), cmap="gray_r", vmin=0, vmax=255)
            ax.set_title(titles[i], fontsize=8)
    return fig


def learning_curves_figure(curves: dict[str, list[float]], best_epoch: int | None) -> Figure:
    """Train vs validation loss and accuracy per epoch; the evaluated checkpoint's epoch marked."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, name in zip(fig.subplots(1, 2), CURVES, strict=True):
        for stage, style in (("train", "o-"), ("val", "s-")):
            values = curves.get(f"{stage}/{name}", [])
            ax.plot(range(1, len(values) + 1), values, style, label=stage, markersize=4)
        if best_epoch:
            ax.axvline(best_epoch, color="gray", linestyle=":", label=f"checkpoint (epoch {best_epoch})")
        ax.set(xlabel="epoch", ylabel=name, title=f"{name}: train vs validation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    return fig


def class_distribution_figure(counts: dict[str, Tensor], classes: Sequence[str]) -> Figure:
    """Images per class in each split, as grouped bars."""
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(counts)
    for i, (split, values) in enumerate(counts.items()):
        ax.bar(np.arange(len(classes)) + (i - (len(counts) - 1) / 2) * width, values.numpy(), width, label=split)
    top = max(int(v.max()) for v in counts.values())
    ax.set(xticks=range(len(classes)), xlabel="class", ylabel="images", title="Images per class", ylim=(0, top * 1.15))
    ax.set_xticklabels(classes)
    ax.legend(ncols=len(counts), loc="upper center")  # above the bars: the headroom keeps them apart
    return fig


def augmented_samples(images: Tensor, kind: str, seed: int = 0) -> Tensor:
    """uint8 images under the training augmentation ``kind``, one seeded draw (the global RNG left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_augmentation(kind)(images).round().to(torch.uint8)


def save_figure(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=100)
