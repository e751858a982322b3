"""``python evaluate.py`` with tta=true, ckpt_paths=[...] (ensembles) and split=test_shifted, on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mnist_lit.config.checks import command_config
from mnist_lit.data.augment import shifted_images, tta_views
from mnist_lit.data.datamodule import normalize
from mnist_lit.errors import ConfigError
from mnist_lit.evaluation.evaluate import evaluate, load_data, locate_run
from mnist_lit.lit_module import load_classifier
from tests.conftest import N_TEST, run_cli, synthetic_overrides, train_in_process


@pytest.fixture(scope="module")
def runs(synthetic, tmp_path_factory) -> list[Path]:
    """Two 1-epoch MLP runs on synthetic data, different seeds; the first trained with affine augmentation."""
    base = tmp_path_factory.mktemp("ensemble")
    dirs = []
    for seed, extra in ((1, ["data.augment=affine"]), (2, [])):
        run_dir = base / f"s{seed}"
        train_in_process(
            run_dir,
            *synthetic_overrides(synthetic),
            f"seed={seed}",
            "model.hidden=32",
            "trainer.max_epochs=1",
            *extra,
        )
        dirs.append(run_dir)
    return dirs


def official_test(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    test = load_data(locate_run(str(run_dir), None)).test_set
    return test.images, test.labels.long()


def read_report(report_dir: Path) -> dict:
    return json.loads((report_dir / "classification_report.json").read_text())


@torch.no_grad()
def test_ensemble_accuracy_is_that_of_the_averaged_logits(runs, tmp_path):
    ckpts = [str(d / "checkpoints" / "best.ckpt") for d in runs]
    done = run_cli("evaluate.py", f"ckpt_paths=[{','.join(ckpts)}]", "tensorboard=false")
    report_dir = runs[0] / "report_ensemble"
    assert str(report_dir) in done.stdout and "ensemble of 2" in done.stdout
    report = read_report(report_dir)
    images, labels = official_test(runs[0])
    models = [load_classifier(c).eval() for c in ckpts]
    logits = sum(m(normalize(images)) for m in models) / 2
    expected = float((logits.argmax(1) == labels).float().mean())
    assert report["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert report["ensemble"] == ckpts and report["images"] == N_TEST
    assert "Ensemble of 2 checkpoints" in (report_dir / "report.md").read_text()


@torch.no_grad()
def test_tta_accuracy_is_that_of_the_logits_averaged_over_the_views(runs, tmp_path):
    summary = evaluate(command_config("eval", run_dir=str(runs[1]), tta=True, report_dir=str(tmp_path / "tta")))
    model = load_classifier(str(runs[1] / "checkpoints" / "best.ckpt")).eval()
    images, labels = official_test(runs[1])
    views = tta_views(images)
    logits = sum(model(normalize(v)) for v in views) / len(views)
    assert summary["accuracy"] == pytest.approx(float((logits.argmax(1) == labels).float().mean()), abs=1e-6)
    plain = evaluate(command_config("eval", run_dir=str(runs[1]), report_dir=str(tmp_path / "plain")))
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
    for run_dir, augmented in zip(runs, (True, False), strict=True):
        report_dir = tmp_path / run_dir.name
        evaluate(command_config("eval", run_dir=str(run_dir), report_dir=str(report_dir), tensorboard=False))
        assert (report_dir / "augmented.png").is_file() == augmented
        assert ("augmented.png" in (report_dir / "report.md").read_text()) == augmented
        # an earlier report, augmented.png included, is replaced as a whole
        evaluate(command_config("eval", run_dir=str(run_dir), report_dir=str(report_dir), tensorboard=False))


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"ckpt_paths": ["ONE"]}, "give two or more checkpoints"),
        ({"ckpt_paths": ["ONE", "TWO"], "run_dir": "RUN"}, "ckpt_paths is an ensemble of its own"),
        ({"run_dir": "RUN", "tta": "maybe"}, "tta='maybe' is not allowed: it must be true or false"),
        ({"run_dir": "RUN", "split": "shifted"}, "choose one of test, val, test_shifted"),
    ],
)
def test_bad_ensemble_and_tta_input_is_rejected(runs, values, expected):
    ckpt = str(runs[0] / "checkpoints" / "best.ckpt")
    fill = {"ONE": ckpt, "TWO": str(runs[1] / "checkpoints" / "best.ckpt"), "RUN": str(runs[0])}
    resolved = {k: [fill[p] for p in v] if isinstance(v, list) else fill.get(v, v) for k, v in values.items()}
    with pytest.raises(ConfigError, match=expected):
        evaluate(command_config("eval", **resolved))


def test_cli_rejects_an_ensemble_of_one_without_a_traceback(runs, tmp_path):
    ckpt = runs[0] / "checkpoints" / "best.ckpt"
    done = run_cli("evaluate.py", f"ckpt_paths=[{ckpt}]", f"report_dir={tmp_path / 'r'}", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: ckpt_paths=")
    assert not (tmp_path / "r").exists()
