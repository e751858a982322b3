"""``python evaluate.py`` and ``evaluate_after_fit`` on synthetic data: files, numbers, TensorBoard, rejected input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lit.config.checks import command_config
from mnist_lit.errors import ConfigError
from mnist_lit.evaluation.evaluate import evaluate
from tests.conftest import N_TEST, N_TRAIN, run_cli, synthetic_overrides

REPORT_FILES = (
    "classification_report.txt",
    "classification_report.json",
    "confusion_matrix.csv",
    "confusion_matrix.png",
    "misclassified.png",
    "learning_curves.png",
    "class_distribution.png",
    "samples.png",
    "report.md",
)


@pytest.fixture(scope="module")
def run(synthetic, tmp_path_factory) -> dict:
    """A 2-epoch MLP run on synthetic data that wrote its report at the end of training."""
    run_dir = tmp_path_factory.mktemp("runs") / "mlp"
    done = run_cli(
        "train.py",
        *synthetic_overrides(synthetic),
        f"hydra.run.dir={run_dir}",
        "trainer.max_epochs=2",
        "evaluate_after_fit=true",
    )
    return {
        "dir": run_dir,
        "stdout": done.stdout,
        "metrics": json.loads((run_dir / "metrics.json").read_text()),
        "report": json.loads((run_dir / "report" / "classification_report.json").read_text()),
    }


def read_confusion(path: Path) -> list[list[int]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true\\predicted", *map(str, range(10))]
    return [[int(v) for v in row[1:]] for row in rows[1:]]


def test_evaluate_after_fit_writes_every_file(run):
    report_dir = run["dir"] / "report"
    for name in REPORT_FILES:
        assert (report_dir / name).stat().st_size > 0, name
        if name.endswith(".png"):
            with Image.open(report_dir / name) as image:
                image.verify()
    assert not [p for p in report_dir.parent.iterdir() if p.name.startswith(".report")]  # no leftovers
    markdown = (report_dir / "report.md").read_text()
    for name in REPORT_FILES[:-1]:
        assert f"({name})" in markdown, name
    assert "Classification report (test split" in run["stdout"] and "Most frequent confusions" in run["stdout"]


def test_report_numbers_agree_with_metrics_json_and_each_other(run):
    document = run["report"]
    report = document["report"]
    confusion = read_confusion(run["dir"] / "report" / "confusion_matrix.csv")
    assert confusion == document["confusion_matrix"]
    total = sum(map(sum, confusion))
    trace = sum(confusion[i][i] for i in range(10))
    assert total == N_TEST == document["images"]
    assert report["accuracy"] == pytest.approx(trace / total, abs=1e-6)
    assert report["accuracy"] == pytest.approx(run["metrics"]["test/acc"], abs=1e-6)
    assert document["metrics_json_test_acc"] == run["metrics"]["test/acc"]
    for digit, row in enumerate(confusion):
        column = sum(r[digit] for r in confusion)
        assert report[str(digit)]["support"] == sum(row)
        assert report[str(digit)]["recall"] == pytest.approx(row[digit] / sum(row), abs=1e-6)
        if column:
            assert report[str(digit)]["precision"] == pytest.approx(row[digit] / column, abs=1e-6)
    macro = sum(report[str(d)]["f1-score"] for d in range(10)) / 10
    assert report["macro avg"]["f1-score"] == pytest.approx(macro, abs=1e-6)
    # The largest off-diagonal cells, largest first.
    cells = sorted((confusion[t][p] for t in range(10) for p in range(10) if t != p and confusion[t][p]), reverse=True)
    assert [c["count"] for c in document["top_confusions"]] == cells[:10]
    for c in document["top_confusions"]:
        assert confusion[c["true"]][c["predicted"]] == c["count"]


def test_text_report_matches_json(run):
    report = run["report"]["report"]
    lines = (run["dir"] / "report" / "classification_report.txt").read_text().splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    rows = {" ".join(line.split()[:-4]): line.split()[-4:] for line in lines[2:] if len(line.split()) >= 5}
    for name in [*map(str, range(10)), "macro avg", "weighted avg"]:
        values = [f"{report[name][k]:.4f}" for k in ("precision", "recall", "f1-score")]
        assert rows[name] == [*values, str(report[name]["support"])], name
    accuracy = next(line.split() for line in lines if line.split()[:1] == ["accuracy"])
    assert accuracy == ["accuracy", f"{report['accuracy']:.4f}", str(N_TEST)]


def test_tensorboard_holds_the_report_images_and_text(run):
    events = EventAccumulator(str(run["dir"]), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert {"test/confusion_matrix", "test/misclassified"} <= set(tags["images"])
    assert "test/classification_report/text_summary" in tags["tensors"]
    text = events.Tensors("test/classification_report/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "macro avg" in text and "weighted avg" in text
    assert "test/acc" in tags["scalars"]  # beside the training scalars


def test_val_split_from_ckpt_path_matches_the_best_epoch(run, tmp_path):
    ckpt = run["dir"] / "checkpoints" / "best.ckpt"
    done = run_cli(
        "evaluate.py", f"ckpt_path={ckpt}", "split=val", f"report_dir={tmp_path / 'val'}", "tensorboard=false"
    )
    document = json.loads((tmp_path / "val" / "classification_report.json").read_text())
    assert document["split"] == "val" and document["images"] == round(N_TRAIN * 0.2)
    assert document["report"]["accuracy"] == pytest.approx(run["metrics"]["val/acc"], abs=1e-6)
    assert document["metrics_json_test_acc"] is None
    assert f"Report written to {tmp_path / 'val'}" in done.stdout
    assert sorted(p.name for p in (tmp_path / "val").iterdir()) == sorted(REPORT_FILES)


def run_without_checkpoints(run: dict, tmp_path: Path) -> Path:
    bare = tmp_path / "bare_run"
    shutil.copytree(run["dir"] / ".hydra", bare / ".hydra")
    return bare


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"split": "foo"}, "split='foo' is not allowed: choose one of test, val"),
        ({"run_dir": None}, "run_dir and ckpt_path are both missing"),
        ({"misclassified": 0}, "misclassified=0 is not allowed"),
        ({"run_dir": "{bare}"}, "has no checkpoints/best.ckpt"),
        ({"run_dir": "{tmp}"}, "is not a training run directory (no .hydra/config.yaml)"),
        ({"ckpt_path": "{tmp}/best.ckpt", "run_dir": None}, "is not inside a run's checkpoints/ folder"),
        ({"ckpt_path": "{run}/missing.ckpt"}, "no such file"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(run, tmp_path, values, expected):
    paths = {"bare": str(run_without_checkpoints(run, tmp_path)), "tmp": str(tmp_path), "run": str(run["dir"])}
    values = {k: v.format(**paths) if isinstance(v, str) else v for k, v in values.items()}
    cfg = command_config("eval", **{"run_dir": str(run["dir"]), "report_dir": str(tmp_path / "report"), **values})
    with pytest.raises(ConfigError) as error:
        evaluate(cfg)
    assert expected in str(error.value)
    assert not (tmp_path / "report").exists()


def test_cli_rejects_bad_input_without_a_traceback(run, tmp_path):
    done = run_cli("evaluate.py", f"run_dir={run['dir']}", "split=foo", f"report_dir={tmp_path}/r", check=False)
    assert done.returncode == 2
    assert "Error: split='foo' is not allowed: choose one of test, val" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()
