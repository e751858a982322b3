"""The evaluation report folder: what it holds, how an earlier one is recognised, and writing it whole."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lit.data.datamodule import SPLITS, ImageDataModule
from mnist_lit.display.tensorboard import log_report
from mnist_lit.evaluation.figures import (
    CURVES,
    augmented_samples,
    class_distribution_figure,
    confusion_figure,
    image_grid,
    learning_curves_figure,
    save_figure,
)
from mnist_lit.evaluation.report_text import (
    REPORT_TITLE,
    classification_report_text,
    confusions_text,
    report_markdown,
)
from mnist_lit.evaluation.results import Predictions, Run, Scores
from mnist_lit.io.owned import Owned
from mnist_lit.io.readers import FileProblem, load_metrics, read_json, read_text

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

# What marks those files as this project's: keys of classification_report.json, report.md's first line.
REPORT_KEYS = {"run_dir", "checkpoint", "split", "accuracy", "report", "confusion_matrix"}

# Reading event files logs every file switch at INFO; the report has nothing to add by showing that.
logging.getLogger("tensorboard").setLevel(logging.WARNING)


def read_curves(run_dir: Path) -> dict[str, list[float]]:
    """The per-epoch train/val loss and accuracy that training logged to the run's TensorBoard."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    wanted = [f"{stage}/{name}" for stage in ("train", "val") for name in CURVES]
    return {tag: [e.value for e in events.Scalars(tag)] for tag in wanted if tag in tags}


def is_report(directory: Path) -> bool:
    """Whether ``directory`` is an earlier report of this project: its files and nothing else, its summary
    (classification_report.json) an object with the keys this project writes, its report.md our title line."""
    names = {p.name for p in directory.iterdir()}
    if not {"report.md", "classification_report.json"} <= names <= set(REPORT_FILES):
        return False
    try:
        summary = read_json(directory / "classification_report.json")
        title = read_text(directory / "report.md").partition("\n")[0]
    except FileProblem:
        return False
    return isinstance(summary, dict) and summary.keys() >= REPORT_KEYS and title.startswith(REPORT_TITLE)


REPORT = Owned("an earlier report of this project", is_report, folder=True)


def first_images(datamodule: ImageDataModule, split: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` uint8 images of ``split`` and their labels, on the CPU."""
    images, labels, have = [], [], 0
    for x, y in datamodule.eval_dataloader(split):
        images.append(x[: count - have].cpu())
        labels.append(y[: count - have].cpu())
        have += len(labels[-1])
        if have >= count:
            break
    return torch.cat(images), torch.cat(labels)


def write_report(
    cfg: DictConfig,
    run: Run,
    datamodule: ImageDataModule,
    predictions: Predictions,
    scores: Scores,
    report_dir: Path,
) -> dict[str, Any]:
    """Write every report file into ``report_dir`` (replaced as a whole), log to TensorBoard, print the tables."""
    epoch, step = run.checkpoint.get("epoch", -1) + 1, run.checkpoint.get("global_step", 0)
    metrics_file = run.run_dir / "metrics.json"
    metrics_acc = None
    single = not run.ensemble and not cfg.get("tta")
    if single and cfg.split == "test" and run.ckpt_path.name == "best.ckpt" and metrics_file.is_file():
        metrics_acc = load_metrics(metrics_file, f"run_dir={str(run.run_dir)!r}").get("test/acc")
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
        "class_names": list(datamodule.class_names),  # the report's class indices, named by the data module
    }
    classes = datamodule.class_names
    text = classification_report_text(report, classes)
    counts = {
        split: sum(
            torch.bincount(labels.cpu().long(), minlength=len(classes))
            for _, labels in datamodule.eval_dataloader(split)
        )
        for split in SPLITS
    }

    with REPORT.written(report_dir) as tmp:
        (tmp / "classification_report.txt").write_text(text)
        document = {**summary, "report": report, "confusion_matrix": scores.confusion.tolist()}
        (tmp / "classification_report.json").write_text(json.dumps(document, indent=2) + "\n")
        with open(tmp / "confusion_matrix.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["true\\predicted", *classes])
            writer.writerows([name, *row] for name, row in zip(classes, scores.confusion.tolist(), strict=True))
        figure = confusion_figure(scores.confusion, f"Confusion matrix, {cfg.split} split", classes)
        save_figure(figure, tmp / "confusion_matrix.png")

        wrong = (predictions.predicted != predictions.labels).nonzero().flatten()
        confidence = predictions.probs.max(dim=1).values
        wrong = wrong[confidence[wrong].argsort(descending=True)][: cfg.misclassified]
        captions = [
            f"{classes[predictions.labels[i]]} → {classes[predictions.predicted[i]]} ({float(confidence[i]):.2f})"
            for i in wrong
        ]
        title = f"Misclassified ({len(wrong)} of {summary['images'] - summary['correct']}): true → predicted"
        save_figure(image_grid(predictions.images[wrong], captions, 8, title), tmp / "misclassified.png")

        save_figure(learning_curves_figure(read_curves(run.run_dir), epoch), tmp / "learning_curves.png")
        save_figure(class_distribution_figure(counts, classes), tmp / "class_distribution.png")
        samples, labels = first_images(datamodule, "train", cfg.samples)
        captions = [classes[label] for label in labels]
        save_figure(image_grid(samples, captions, 10, "Training images"), tmp / "samples.png")
        if summary["augment"]:
            augmented = augmented_samples(samples, summary["augment"])
            title = f"The same images under data.augment={summary['augment']} (one draw)"
            save_figure(image_grid(augmented, captions, 10, title), tmp / "augmented.png")
        (tmp / "report.md").write_text(report_markdown(summary, report, counts, classes))

    # An ensemble belongs to no single run's TensorBoard; TTA figures get their own tags.
    if cfg.tensorboard and not run.ensemble:
        log_report(run.run_dir, report_dir, f"{cfg.split}_tta" if cfg.get("tta") else cfg.split, text, step)
    what = f"ensemble of {len(run.ensemble)}" if run.ensemble else str(run.ckpt_path)
    print(f"\nClassification report ({cfg.split} split, {what}{', TTA' if cfg.get('tta') else ''}):\n\n{text}")
    print(f"Most frequent confusions:\n\n{confusions_text(top, classes)}")
    print(f"Report written to {report_dir}")
    return {**summary, "report_dir": str(report_dir)}
