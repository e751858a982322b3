"""The report as text: the classification report in scikit-learn's layout, the confusions, the Markdown page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from mnist_lit.display.tables import markdown_table


def classification_report_text(report: dict[str, Any], classes: Sequence[str], digits: int = 4) -> str:
    """scikit-learn's classification report layout: per class, then accuracy and the averages."""
    columns = ("precision", "recall", "f1-score")
    width = max(12, *(len(name) + 1 for name in classes))
    lines = [" " * width + "".join(f"{c:>{width}}" for c in columns) + f"{'support':>{width}}", ""]
    for index, name in enumerate(classes):
        row = report[str(index)]
        values = "".join(f"{row[c]:>{width}.{digits}f}" for c in columns)
        lines.append(f"{name:>{width}}{values}{row['support']:>{width}}")
    total = report["macro avg"]["support"]
    lines += ["", f"{'accuracy':>{width}}{'':>{2 * width}}{report['accuracy']:>{width}.{digits}f}{total:>{width}}"]
    for name in ("macro avg", "weighted avg"):
        values = "".join(f"{report[name][c]:>{width}.{digits}f}" for c in columns)
        lines.append(f"{name:>{width}}{values}{total:>{width}}")
    return "\n".join(lines) + "\n"


def confusions_text(top: list[dict[str, int]], classes: Sequence[str]) -> str:
    """The most frequent confusions as a fixed-width table."""
    width = max(6, *(len(name) + 1 for name in classes))
    lines = [f"{'true':>{width}}{'predicted':>{width + 5}}{'count':>8}"]
    lines += [f"{classes[c['true']]:>{width}}{classes[c['predicted']]:>{width + 5}}{c['count']:>8}" for c in top]
    return "\n".join(lines) + "\n"


REPORT_TITLE = "# Evaluation: "  # report.md's first line starts so: the mark of an earlier report


def report_markdown(
    summary: dict[str, Any], report: dict[str, Any], counts: dict[str, Tensor], classes: Sequence[str]
) -> str:
    """One readable page: the figures embedded, with short tables and the most frequent confusions in words."""
    split, top = summary["split"], summary["top_confusions"]
    per_digit = [
        [name, *(f"{report[str(d)][c]:.4f}" for c in ("precision", "recall", "f1-score")), report[str(d)]["support"]]
        for d, name in enumerate(classes)
    ]
    per_digit += [
        [f"**{name}**", *(f"{report[name][c]:.4f}" for c in ("precision", "recall", "f1-score")), summary["images"]]
        for name in ("macro avg", "weighted avg")
    ]
    check = ""
    if summary.get("metrics_json_test_acc") is not None:
        check = f"; `test/acc` in the run's metrics.json: {summary['metrics_json_test_acc']:.4f}"
    in_words = "; ".join(f"{classes[c['true']]} read as {classes[c['predicted']]} {c['count']} times" for c in top[:4])
    distribution = [[name, *(int(v[d]) for v in counts.values())] for d, name in enumerate(classes)]
    distribution.append(["**total**", *(int(v.sum()) for v in counts.values())])
    return "\n".join(
        [
            f"{REPORT_TITLE}{summary['run_name']}",
            "",
            f"- Run: `{summary['run_dir']}`",
            *method_lines(summary),
            f"- Split: **{split}**, {summary['images']} images",
            f"- Accuracy: **{summary['accuracy']:.4f}** ({summary['correct']} of {summary['images']} correct, "
            f"{summary['images'] - summary['correct']} errors{check})",
            "",
            "## Per class",
            "",
            markdown_table(["class", "precision", "recall", "f1-score", "support"], per_digit),
            "Full report: [classification_report.txt](classification_report.txt), "
            "[classification_report.json](classification_report.json).",
            "",
            "## Confusion matrix",
            "",
            "Rows are the true class, columns the prediction ([confusion_matrix.csv](confusion_matrix.csv)).",
            "",
            "![confusion matrix](confusion_matrix.png)",
            "",
            "## Most frequent confusions",
            "",
            markdown_table(
                ["true", "predicted", "count"],
                [[classes[c["true"]], classes[c["predicted"]], c["count"]] for c in top],
            ),
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
            markdown_table(["class", *counts.keys()], distribution),
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
