"""``evaluate(cfg)`` on synthetic runs: numbers that agree with metrics.json, the validation split, ensembles, TTA,
the shifted split, and refused input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mnist_lit.checkpoints import load_classifier
from mnist_lit.config.checks import command_config
from mnist_lit.data.augment import shifted_images, tta_views
from mnist_lit.data.datamodule import normalize
from mnist_lit.data.fashion_mnist import DATASET as FASHION_MNIST
from mnist_lit.errors import ConfigError
from mnist_lit.evaluation.evaluate import evaluate, load_data, locate_run
from tests.conftest import N_TEST, N_TRAIN, REPORT_FILES, assert_refused, run_cli


def read_confusion(path: Path) -> list[list[int]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true\\predicted", *map(str, range(10))]
    return [[int(v) for v in row[1:]] for row in rows[1:]]


def test_report_numbers_agree_with_metrics_json_and_each_other(evaluated_run):
    document = evaluated_run["report"]
    report = document["report"]
    confusion = read_confusion(evaluated_run["dir"] / "report" / "confusion_matrix.csv")
    assert confusion == document["confusion_matrix"]
    total = sum(map(sum, confusion))
    trace = sum(confusion[i][i] for i in range(10))
    assert total == N_TEST == document["images"]
    assert report["accuracy"] == pytest.approx(trace / total, abs=1e-6)
    assert report["accuracy"] == pytest.approx(evaluated_run["metrics"]["test/acc"], abs=1e-6)
    assert document["metrics_json_test_acc"] == evaluated_run["metrics"]["test/acc"]
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


def test_val_split_from_ckpt_path_matches_the_best_epoch(evaluated_run, tmp_path):
    ckpt = evaluated_run["dir"] / "checkpoints" / "best.ckpt"
    done = run_cli(
        "evaluate.py", f"ckpt_path={ckpt}", "split=val", f"report_dir={tmp_path / 'val'}", "tensorboard=false"
    )
    document = json.loads((tmp_path / "val" / "classification_report.json").read_text())
    assert document["split"] == "val" and document["images"] == round(N_TRAIN * 0.2)
    assert document["report"]["accuracy"] == pytest.approx(evaluated_run["metrics"]["val/acc"], abs=1e-6)
    assert document["metrics_json_test_acc"] is None
    assert f"Report written to {tmp_path / 'val'}" in done.stdout
    assert sorted(p.name for p in (tmp_path / "val").iterdir()) == sorted(REPORT_FILES)


def run_without_checkpoints(evaluated_run: dict, tmp_path: Path) -> Path:
    bare = tmp_path / "bare_run"
    shutil.copytree(evaluated_run["dir"] / ".hydra", bare / ".hydra")
    return bare


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"split": "foo"}, "split='foo' is not allowed: it must be one of 'test', 'val'"),
        ({"run_dir": None}, "run_dir and ckpt_path are both missing"),
        ({"misclassified": 0}, "misclassified=0 is not allowed"),
        ({"run_dir": "{bare}"}, "has no checkpoints/best.ckpt"),
        ({"run_dir": "{tmp}"}, "is not a training run directory (no .hydra/config.yaml)"),
        ({"ckpt_path": "{tmp}/best.ckpt", "run_dir": None}, "is not inside a run's checkpoints/ folder"),
        ({"ckpt_path": "{run}/missing.ckpt"}, "no such file"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(evaluated_run, tmp_path, values, expected):
    bare = run_without_checkpoints(evaluated_run, tmp_path)
    paths = {"bare": str(bare), "tmp": str(tmp_path), "run": str(evaluated_run["dir"])}
    values = {k: v.format(**paths) if isinstance(v, str) else v for k, v in values.items()}
    settings = {"run_dir": str(evaluated_run["dir"]), "report_dir": str(tmp_path / "report"), **values}
    cfg = command_config("eval", **settings)
    with pytest.raises(ConfigError) as error:
        evaluate(cfg)
    assert expected in str(error.value)
    assert not (tmp_path / "report").exists()


def official_test(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    test = load_data(locate_run(str(run_dir), None)).test_set
    return test.images, test.labels.long()


def read_report(report_dir: Path) -> dict:
    return json.loads((report_dir / "classification_report.json").read_text())


@torch.no_grad()
def test_ensemble_accuracy_is_that_of_the_averaged_logits(runs, tmp_path):
    copies = [shutil.copytree(d, tmp_path / d.name) for d in runs]  # the report goes into the first run by default
    ckpts = [str(d / "checkpoints" / "best.ckpt") for d in copies]
    done = run_cli("evaluate.py", f"ckpt_paths=[{','.join(ckpts)}]", "tensorboard=false")
    report_dir = copies[0] / "report_ensemble"
    assert str(report_dir) in done.stdout and "ensemble of 2" in done.stdout
    report = read_report(report_dir)
    images, labels = official_test(copies[0])
    models = [load_classifier(c).eval() for c in ckpts]
    logits = sum(m(normalize(images)) for m in models) / 2
    expected = float((logits.argmax(1) == labels).float().mean())
    assert report["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert report["ensemble"] == ckpts and report["images"] == N_TEST
    assert "Ensemble of 2 checkpoints" in (report_dir / "report.md").read_text()


@torch.no_grad()
def test_tta_accuracy_is_that_of_the_logits_averaged_over_the_views(runs, tmp_path):
    summary = evaluate(
        command_config("eval", run_dir=str(runs[1]), tta=True, report_dir=str(tmp_path / "tta"), tensorboard=False)
    )
    model = load_classifier(str(runs[1] / "checkpoints" / "best.ckpt")).eval()
    images, labels = official_test(runs[1])
    views = tta_views(images)
    logits = sum(model(normalize(v)) for v in views) / len(views)
    assert summary["accuracy"] == pytest.approx(float((logits.argmax(1) == labels).float().mean()), abs=1e-6)
    plain = evaluate(
        command_config("eval", run_dir=str(runs[1]), report_dir=str(tmp_path / "plain"), tensorboard=False)
    )
    assert read_report(tmp_path / "tta")["tta"] is True and read_report(tmp_path / "plain")["tta"] is False
    assert summary["metrics_json_test_acc"] is None and plain["metrics_json_test_acc"] is not None
    assert "Test-time augmentation" in (tmp_path / "tta" / "report.md").read_text()


@torch.no_grad()
def test_shifted_split_is_the_test_set_under_fixed_transforms(runs, tmp_path):
    report_dir = tmp_path / "shifted"
    run_cli("evaluate.py", f"run_dir={runs[1]}", "split=test_shifted", f"report_dir={report_dir}", "tensorboard=false")
    report = read_report(report_dir)
    model = load_classifier(str(runs[1] / "checkpoints" / "best.ckpt")).eval()
    images, labels = official_test(runs[1])
    predicted = model(normalize(shifted_images(images))).argmax(1)
    assert report["split"] == "test_shifted" and report["images"] == N_TEST
    assert report["accuracy"] == pytest.approx(float((predicted == labels).float().mean()), abs=1e-6)
    assert "test_shifted" in (report_dir / "report.md").read_text()


def test_the_report_shows_augmented_samples_only_for_augmented_runs(runs, tmp_path):
    report_dir = tmp_path / "report"
    for run_dir, augmented in zip(runs, (True, False), strict=True):
        # the second run's report replaces the first one's as a whole: its augmented.png goes too
        evaluate(command_config("eval", run_dir=str(run_dir), report_dir=str(report_dir), tensorboard=False))
        assert (report_dir / "augmented.png").is_file() == augmented
        assert ("augmented.png" in (report_dir / "report.md").read_text()) == augmented


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"ckpt_paths": ["ONE"]}, "give two or more checkpoints"),
        ({"ckpt_paths": ["ONE", "TWO"], "run_dir": "RUN"}, "ckpt_paths is an ensemble of its own"),
        ({"run_dir": "RUN", "tta": "maybe"}, "tta='maybe' is not allowed: it must be true or false"),
        ({"run_dir": "RUN", "split": "shifted"}, "it must be one of 'test', 'val', 'test_shifted'"),
    ],
)
def test_bad_ensemble_and_tta_input_is_rejected(runs, values, expected):
    ckpt = str(runs[0] / "checkpoints" / "best.ckpt")
    fill = {"ONE": ckpt, "TWO": str(runs[1] / "checkpoints" / "best.ckpt"), "RUN": str(runs[0])}
    resolved = {k: [fill[p] for p in v] if isinstance(v, list) else fill.get(v, v) for k, v in values.items()}
    with pytest.raises(ConfigError, match=expected):
        evaluate(command_config("eval", **resolved))


def run_saying(run: Path, target: Path, hyper_parameters: dict, data: dict) -> Path:
    """A copy of ``run`` whose best.ckpt has these ``hyper_parameters`` and whose .hydra/config.yaml these ``data``
    settings."""
    shutil.copytree(run, target)
    ckpt = target / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["hyper_parameters"].update(hyper_parameters)
    torch.save(checkpoint, ckpt)
    config = OmegaConf.load(target / ".hydra" / "config.yaml")
    config.data.update(data)
    OmegaConf.save(config, target / ".hydra" / "config.yaml")
    return target


FASHION = {"dataset": "fashion_mnist", "data": FASHION_MNIST.spec.as_dict()}  # what a Fashion-MNIST run saves
MISMATCHES = {  # the copy's checkpoint and data settings, the command line, what is refused (None: it evaluates)
    "data that does not fit": ({}, {}, ["run_dir={run}", "data=fashion_mnist"], "(T-shirt/top, Trouser"),
    "data that fits, not the run's": ({}, {"data_dir": "/nonexistent"}, ["run_dir={copy}", "data=synthetic"], None),
    "an ensemble of two data sets": (FASHION, {"dataset": "fashion_mnist"}, ["ckpt_paths=[{best},{copy_best}]"],
                                     "an ensemble is evaluated on one data set and split"),
    "another run's checkpoint": (FASHION, {}, ["run_dir={copy}"], "data.dataset=mnist: it is another run's"),
}  # fmt: skip


@pytest.mark.parametrize("hyper_parameters, data, args, expected", MISMATCHES.values(), ids=MISMATCHES.keys())
def test_a_data_set_is_evaluated_when_it_fits_or_refused_never_ignored(
    trained, reference, synthetic, tmp_path, hyper_parameters, data, args, expected
):
    copy = run_saying(trained, tmp_path / "copy", hyper_parameters, data)
    best = "checkpoints/best.ckpt"
    paths = {"run": trained, "copy": copy, "best": trained / best, "copy_best": copy / best}
    searchpath = f"hydra.searchpath=[file://{synthetic['conf']}]"  # conf/data/synthetic.yaml, the run's data
    args = [searchpath, *(arg.format(**paths) for arg in args), f"report_dir={tmp_path / 'report'}"]
    done = run_cli("evaluate.py", *args, "tensorboard=false", check=expected is None)
    if expected is not None:
        assert_refused(done, expected)
        assert not (tmp_path / "report").exists()
    else:
        assert read_report(tmp_path / "report")["accuracy"] == pytest.approx(reference["accuracy"])
