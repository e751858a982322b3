"""The evaluation report: figures, the classification report as text/JSON/Markdown, TensorBoard, the terminal tables."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from mnist_lit.data.augment import build_augmentation
from mnist_lit.data.datamodule import NUM_CLASSES
from mnist_lit.display.tables import markdown_table
from mnist_lit.errors import ConfigError
from mnist_lit.evaluation.results import Predictions, Run, Scores
from mnist_lit.io.atomic import new_temp_dir, replace_dir, unwritable_reason

DIGITS = list(range(NUM_CLASSES))
# Every file a report holds; a folder with these and nothing else is an earlier report.
REPORT_FILES = (
    "report.md",
    "classification_report.txt",
    "classification_report.json",
    "confusion_matrix.csv",
    "confusion_matrix.png",
    "misclassified.png",
    "learning_curves.png",
    "class_distribution.png",
    "samples.png",
    "augmented.png",  # only for runs trained with data.augment
)
CURVES = ("loss", "acc")

# Reading event files logs every file switch at INFO; the report has nothing to add by showing that.
logging.getLogger("tensorboard").setLevel(logging.WARNING)


def confusion_figure(confusion: Tensor, title: str) -> Figure:
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
    ax.set(xticks=DIGITS, yticks=DIGITS, xlabel="predicted digit", ylabel="true digit", title=title)
    return fig


def image_grid(images: Tensor, titles: list[str], columns: int, title: str) -> Figure:
    """uint8 28x28 images in a grid, each with a short caption."""
    rows = max(1, -(-len(images) // columns))
    fig = Figure(figsize=(columns * 1.25, rows * 1.45 + 0.4), layout="constrained")
    fig.suptitle(title)
    for i, ax in enumerate(fig.subplots(rows, columns, squeeze=False).flat):
        ax.set_axis_off()
        if i < len(images):
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


def class_distribution_figure(counts: dict[str, Tensor]) -> Figure:
    """Images per digit in each split, as grouped bars."""
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(counts)
    for i, (split, values) in enumerate(counts.items()):
        ax.bar(np.arange(NUM_CLASSES) + (i - (len(counts) - 1) / 2) * width, values.numpy(), width, label=split)
    top = max(int(v.max()) for v in counts.values())
    ax.set(xticks=DIGITS, xlabel="digit", ylabel="images", title="Images per digit", ylim=(0, top * 1.15))
    ax.legend(ncols=len(counts), loc="upper center")  # above the bars: the headroom keeps them apart
    return fig


def read_curves(run_dir: Path) -> dict[str, list[float]]:
    """The per-epoch train/val loss and accuracy that training logged to the run's TensorBoard."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    wanted = [f"{stage}/{name}" for stage in ("train", "val") for name in CURVES]
    return {tag: [e.value for e in events.Scalars(tag)] for tag in wanted if tag in tags}


def classification_report_text(report: dict[str, Any], digits: int = 4) -> str:
    """scikit-learn's classification report layout: per digit, then accuracy and the averages."""
    columns = ("precision", "recall", "f1-score")
    width = 12
    lines = [" " * width + "".join(f"{c:>{width}}" for c in columns) + f"{'support':>{width}}", ""]
    for digit in DIGITS:
        row = report[str(digit)]
        values = "".join(f"{row[c]:>{width}.{digits}f}" for c in columns)
        lines.append(f"{digit:>{width}}{values}{row['support']:>{width}}")
    total = report["macro avg"]["support"]
    lines += ["", f"{'accuracy':>{width}}{'':>{2 * width}}{report['accuracy']:>{width}.{digits}f}{total:>{width}}"]
    for name in ("macro avg", "weighted avg"):
        values = "".join(f"{report[name][c]:>{width}.{digits}f}" for c in columns)
        lines.append(f"{name:>{width}}{values}{total:>{width}}")
    return "\n".join(lines) + "\n"


def confusions_text(top: list[dict[str, int]]) -> str:
    """The most frequent confusions as a fixed-width table."""
    lines = [f"{'true':>6}{'predicted':>11}{'count':>8}"]
    lines += [f"{c['true']:>6}{c['predicted']:>11}{c['count']:>8}" for c in top]
    return "\n".join(lines) + "\n"


def report_markdown(summary: dict[str, Any], report: dict[str, Any], counts: dict[str, Tensor]) -> str:
    """One readable page: the figures embedded, with short tables and the most frequent confusions in words."""
    split, top = summary["split"], summary["top_confusions"]
    per_digit = [
        [d, *(f"{report[str(d)][c]:.4f}" for c in ("precision", "recall", "f1-score")), report[str(d)]["support"]]
        for d in DIGITS
    ]
    per_digit += [
        [f"**{name}**", *(f"{report[name][c]:.4f}" for c in ("precision", "recall", "f1-score")), summary["images"]]
        for name in ("macro avg", "weighted avg")
    ]
    check = ""
    if summary.get("metrics_json_test_acc") is not None:
        check = f"; `test/acc` in the run's metrics.json: {summary['metrics_json_test_acc']:.4f}"
    in_words = "; ".join(f"{c['true']} read as {c['predicted']} {c['count']} times" for c in top[:4])
    distribution = [[d, *(int(v[d]) for v in counts.values())] for d in DIGITS]
    distribution.append(["**total**", *(int(v.sum()) for v in counts.values())])
    return "\n".join(
        [
            f"# Evaluation: {summary['run_name']}",
            "",
            f"- Run: `{summary['run_dir']}`",
            *method_lines(summary),
            f"- Split: **{split}**, {summary['images']} images",
            f"- Accuracy: **{summary['accuracy']:.4f}** ({summary['correct']} of {summary['images']} correct, "
            f"{summary['images'] - summary['correct']} errors{check})",
            "",
            "## Per digit",
            "",
            markdown_table(["digit", "precision", "recall", "f1-score", "support"], per_digit),
            "Full report: [classification_report.txt](classification_report.txt), "
            "[classification_report.json](classification_report.json).",
            "",
            "## Confusion matrix",
            "",
            "Rows are the true digit, columns the prediction ([confusion_matrix.csv](confusion_matrix.csv)).",
            "",
            "![confusion matrix](confusion_matrix.png)",
            "",
            "## Most frequent confusions",
            "",
            markdown_table(["true", "predicted", "count"], [[c["true"], c["predicted"], c["count"]] for c in top]),
            f"In words: {in_words}." if top else "No confusions: every image was classified correctly.",
            "",
            "## Misclassified images",
            "",
            "The most confident mistakes first; each caption reads true → predicted (confidence).",
            "",
            "![misclassified images](misclassified.png)",
            "",
            "## Learning curves",
            "",
            "Read from the run's TensorBoard logs.",
            "",
            "![learning curves](learning_curves.png)",
            "",
            "## Data",
            "",
            markdown_table(["digit", *counts.keys()], distribution),
            "![class distribution](class_distribution.png)",
            "",
            "![training samples](samples.png)",
            "",
            *(
                [f"![training samples, {summary['augment']} augmentation](augmented.png)", ""]
                if summary["augment"]
                else []
            ),
        ]
    )


def augmented_samples(images: Tensor, kind: str, seed: int = 0) -> Tensor:
    """uint8 images under the training augmentation ``kind``, one seeded draw (the global RNG left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_augmentation(kind)(images).round().to(torch.uint8)


def method_lines(summary: dict[str, Any]) -> list[str]:
    """report.md's lines on what was evaluated: one checkpoint or an ensemble, with or without TTA."""
    if summary["ensemble"]:
        lines = [f"- Ensemble of {len(summary['ensemble'])} checkpoints, logits averaged:"]
        lines += [f"  - `{path}`" for path in summary["ensemble"]]
    else:
        lines = [f"- Checkpoint: `{summary['checkpoint']}` (epoch {summary['epoch']}, step {summary['step']})"]
    if summary["tta"]:
        lines.append("- Test-time augmentation: logits averaged over 9 fixed views of each image")
    return lines


def save_figure(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=100)


def is_report(directory: Path) -> bool:
    """Whether ``directory`` is an earlier report of this project: its files and nothing else."""
    names = {p.name for p in directory.iterdir()}
    return {"report.md", "classification_report.json"} <= names <= set(REPORT_FILES)


def check_report_dir(report_dir: Path, shown: str) -> None:
    """``report_dir`` may be new, empty or an earlier report (replaced whole); anything else is refused."""
    if report_dir.is_dir():
        if any(report_dir.iterdir()) and not is_report(report_dir):
            raise ConfigError(
                f"report_dir={shown} is not allowed: that folder holds files that are not an earlier report of "
                "this project, and replacing it would remove them. Give a new folder name (or leave report_dir "
                "unset: <run>/report)"
            )
    elif report_dir.exists():
        raise ConfigError(
            f"report_dir={shown} is not allowed: it is a file. Give a folder name that does not exist yet"
        )
    reason = unwritable_reason(report_dir.parent)
    if reason:
        raise ConfigError(f"report_dir={shown} cannot be written: {reason}. Give a folder in a writable place")


def log_to_tensorboard(run_dir: Path, report_dir: Path, split: str, text: str, step: int) -> None:
    """The confusion matrix, the misclassified grid and the classification report, beside the run's scalars."""
    with SummaryWriter(str(run_dir)) as writer:
        for name in ("confusion_matrix", "misclassified"):
            image = np.asarray(Image.open(report_dir / f"{name}.png").convert("RGB"))
            writer.add_image(f"{split}/{name}", image, step, dataformats="HWC")
        # Four leading spaces: TensorBoard renders text as Markdown, and this keeps the columns aligned.
        writer.add_text(f"{split}/classification_report", "\n".join(f"    {line}" for line in text.splitlines()), step)


def read_metrics(path: Path) -> dict[str, Any]:
    """A run's metrics.json; ConfigError naming the file when it is not a JSON object."""
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(
            f"run_dir={path.parent} is not allowed: its metrics.json cannot be read ({e}). "
            "Move the file aside to evaluate the run without it"
        ) from e
    if not isinstance(metrics, dict):
        raise ConfigError(f"run_dir={path.parent} is not allowed: its metrics.json holds no JSON object")
    return metrics


def write_report(
    cfg: DictConfig,
    run: Run,
    datamodule: L.LightningDataModule,
    predictions: Predictions,
    scores: Scores,
    report_dir: Path,
) -> dict[str, Any]:
    """Write every report file into ``report_dir`` (replaced as a whole), log to TensorBoard, print the tables."""
    checkpoint = torch.load(run.ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    epoch, step = checkpoint.get("epoch", -1) + 1, checkpoint.get("global_step", 0)
    metrics_file = run.run_dir / "metrics.json"
    metrics_acc = None
    single = not run.ensemble and not cfg.get("tta")
    if single and cfg.split == "test" and run.ckpt_path.name == "best.ckpt" and metrics_file.is_file():
        metrics_acc = read_metrics(metrics_file).get("test/acc")
    report = scores.as_dict()
    top = scores.top_confusions(cfg.top_confusions)
    summary = {
        "run_name": OmegaConf.select(run.config, "run_name", default=None) or run.run_dir.name,
        "run_dir": str(run.run_dir),
        "checkpoint": str(run.ckpt_path),
        "ensemble": [str(path) for path in run.ensemble],  # every checkpoint averaged, if several
        "tta": bool(cfg.get("tta")),
        "augment": OmegaConf.select(run.config, "data.augment", default=None),  # the training augmentation
        "epoch": epoch,
        "step": step,
        "split": cfg.split,
        "images": len(predictions.labels),
        "correct": int(scores.confusion.trace()),
        "accuracy": scores.accuracy,
        "metrics_json_test_acc": metrics_acc,
        "top_confusions": top,
    }
    text = classification_report_text(report)
    counts = {
        name: torch.bincount(dataset.labels.cpu().long(), minlength=NUM_CLASSES)
        for name, dataset in (
            ("train", datamodule.train_set),
            ("val", datamodule.val_set),
            ("test", datamodule.test_set),
        )
    }

    report_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp_dir(report_dir)
    try:
        (tmp / "classification_report.txt").write_text(text)
        document = {**summary, "report": report, "confusion_matrix": scores.confusion.tolist()}
        (tmp / "classification_report.json").write_text(json.dumps(document, indent=2) + "\n")
        with open(tmp / "confusion_matrix.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["true\\predicted", *DIGITS])
            writer.writerows([digit, *row] for digit, row in zip(DIGITS, scores.confusion.tolist(), strict=True))
        save_figure(
            confusion_figure(scores.confusion, f"Confusion matrix, {cfg.split} split"), tmp / "confusion_matrix.png"
        )

        wrong = (predictions.predicted != predictions.labels).nonzero().flatten()
        confidence = predictions.probs.max(dim=1).values
        wrong = wrong[confidence[wrong].argsort(descending=True)][: cfg.misclassified]
        captions = [
            f"{int(predictions.labels[i])} → {int(predictions.predicted[i])} ({float(confidence[i]):.2f})"
            for i in wrong
        ]
        title = f"Misclassified ({len(wrong)} of {summary['images'] - summary['correct']}): true → predicted"
        save_figure(image_grid(predictions.images[wrong], captions, 8, title), tmp / "misclassified.png")

        save_figure(learning_curves_figure(read_curves(run.run_dir), epoch), tmp / "learning_curves.png")
        save_figure(class_distribution_figure(counts), tmp / "class_distribution.png")
        train = datamodule.train_set
        shown = min(cfg.samples, len(train))
        captions = [str(int(label)) for label in train.labels[:shown]]
        save_figure(image_grid(train.images[:shown].cpu(), captions, 10, "Training images"), tmp / "samples.png")
        if summary["augment"]:
            augmented = augmented_samples(train.images[:shown].cpu(), summary["augment"])
            title = f"The same images under data.augment={summary['augment']} (one draw)"
            save_figure(image_grid(augmented, captions, 10, title), tmp / "augmented.png")
        (tmp / "report.md").write_text(report_markdown(summary, report, counts))
        replace_dir(tmp, report_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    # An ensemble belongs to no single run's TensorBoard; TTA figures get their own tags.
    if cfg.tensorboard and not run.ensemble:
        log_to_tensorboard(run.run_dir, report_dir, f"{cfg.split}_tta" if cfg.get("tta") else cfg.split, text, step)
    what = f"ensemble of {len(run.ensemble)}" if run.ensemble else str(run.ckpt_path)
    print(f"\nClassification report ({cfg.split} split, {what}{', TTA' if cfg.get('tta') else ''}):\n\n{text}")
    print(f"Most frequent confusions:\n\n{confusions_text(top)}")
    print(f"Report written to {report_dir}")
    return {**summary, "report_dir": str(report_dir)}
