"""Fashion-MNIST through the same data module: its files from Debian's package, its normalisation and class names."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest
import torch

from mnist_lit.config.checks import command_config
from mnist_lit.data import fashion_mnist
from mnist_lit.data.acquire import DataUnavailableError, ensure_dataset
from mnist_lit.data.datamodule import MNISTDataModule
from mnist_lit.data.fashion_mnist import DATASET as FASHION
from mnist_lit.data.mnist import DATASET as MNIST
from mnist_lit.evaluation.evaluate import evaluate
from tests.conftest import compose_train, train_in_process, write_synthetic_mnist

UNREACHABLE = ["http://127.0.0.1:9/"]


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> dict:
    """Synthetic Fashion-MNIST files and a Hydra config dir with ``data=synthetic_fashion`` pointing at them."""
    base = tmp_path_factory.mktemp("fashion")
    checksums = write_synthetic_mnist(base / "data", dataset=FASHION)
    conf = base / "conf" / "data"
    conf.mkdir(parents=True)
    (conf / "synthetic_fashion.yaml").write_text(
        "defaults:\n  - fashion_mnist\n  - _self_\n"
        f"data_dir: {base / 'data'}\nmirrors: {json.dumps(UNREACHABLE)}\nchecksums: {json.dumps(checksums)}\n"
    )
    overrides = [f"hydra.searchpath=[file://{base / 'conf'}]", "data=synthetic_fashion", "data.eval_batch_size=100"]
    return {"data_dir": base / "data", "checksums": checksums, "overrides": overrides}


def test_the_data_set_declares_its_files_normalisation_and_classes():
    assert FASHION.name == "FashionMNIST" and set(FASHION.files) == set(MNIST.files)
    assert FASHION.classes[0] == "T-shirt/top" and FASHION.classes[9] == "Ankle boot" and len(FASHION.classes) == 10
    images = torch.full((1, 28, 28), 255, dtype=torch.uint8)
    assert FASHION.normalize(images).flatten()[0] == pytest.approx((1 - 0.2860) / 0.3530)
    assert compose_train("data=fashion_mnist").data.dataset == "fashion_mnist"


def test_files_come_from_the_debian_package_checked_by_md5(fashion, tmp_path, monkeypatch):
    package = tmp_path / "debian"
    package.mkdir()
    for name in FASHION.files:
        with (
            open(fashion["data_dir"] / "FashionMNIST" / "raw" / name, "rb") as src,
            gzip.open(package / f"{name}.gz", "wb") as dst,
        ):
            shutil.copyfileobj(src, dst)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", package)
    source = ensure_dataset(tmp_path / "data", FASHION, mirrors=UNREACHABLE, checksums=fashion["checksums"])
    assert source.startswith("Debian package dataset-fashion-mnist")
    raw = FASHION.raw_dir(tmp_path / "data")
    assert sorted(p.name for p in raw.iterdir() if not p.name.startswith(".")) == sorted(FASHION.files)
    # Files that do not match the published MD5s are never installed; the error says what to do.
    with pytest.raises(DataUnavailableError, match="dataset-fashion-mnist") as refused:
        ensure_dataset(tmp_path / "other", FASHION, mirrors=UNREACHABLE)
    assert "could not obtain FashionMNIST" in str(refused.value)
    assert not any(FASHION.raw_dir(tmp_path / "other").glob("*-ubyte"))


def test_trains_and_reports_with_its_class_names(fashion, tmp_path):
    datamodule = MNISTDataModule(
        dataset="fashion_mnist", data_dir=str(fashion["data_dir"]), checksums=fashion["checksums"]
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert datamodule.dataset is FASHION and len(datamodule.train_set) == 400
    run = tmp_path / "run"
    metrics = train_in_process(
        run, *fashion["overrides"], "model=cnn", "model.filters=4", "model.dense=16", "trainer.max_epochs=1"
    )
    assert metrics["test/acc"] is not None
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best["hyper_parameters"]["dataset"] == "fashion_mnist"  # inference normalises as training did
    evaluate(command_config("eval", run_dir=str(run), tensorboard=False))
    page = (run / "report" / "report.md").read_text()
    assert "| Ankle boot |" in page and "T-shirt/top" in (run / "report" / "classification_report.txt").read_text()
    assert (run / "report" / "confusion_matrix.csv").read_text().startswith("true\\predicted,T-shirt/top,Trouser")
