"""``data=image_folder``: a folder of class folders read once into memory, trained on for an epoch and evaluated;
bad data refused in one line naming the file, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_lit.checkpoints import load_classifier
from mnist_lit.config.checks import command_config
from mnist_lit.data.image_folder import ImageFolderDataModule
from mnist_lit.errors import ConfigError
from mnist_lit.evaluation.evaluate import evaluate
from tests.conftest import assert_refused, run_cli, snapshot, train_in_process

CLASSES = ("circle", "square", "stripes")
COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200))


def write_folder(root, per_class: int = 24, size: int = 32, seed: int = 0):
    """``root/<class>/<i>.png``: 32x32 RGB images, each class its own colour, with noise."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3)) + np.array(COLOURS[label]) // 2
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("images") / "shapes")


def test_a_folder_trains_and_its_report_names_its_classes(folder, tmp_path):
    run = tmp_path / "run"
    overrides = ("data=image_folder", f"data.root={folder}", "model=cnn", "model.filters=4", "model.dense=16")
    metrics = train_in_process(run, *overrides, "trainer.max_epochs=1", "data.batch_size=16")
    assert metrics["test/acc"] is not None and "held out: 7 of the 72 images" in metrics["test_set"]
    classifier = load_classifier(run / "checkpoints" / "best.ckpt")
    assert classifier.spec.input_shape == (3, 32, 32) and classifier.spec.class_names == CLASSES
    summary = evaluate(command_config("eval", run_dir=str(run), tensorboard=False))
    document = json.loads((run / "report" / "classification_report.json").read_text())
    assert summary["images"] == 7 and document["class_names"] == list(CLASSES)
    text = (run / "report" / "classification_report.txt").read_text()
    assert [line.split()[0] for line in text.splitlines()[2:5]] == list(CLASSES)
    header = (run / "report" / "confusion_matrix.csv").read_text().splitlines()[0]
    assert header == "true\\predicted," + ",".join(CLASSES)


def test_a_test_folder_is_the_test_set_and_sizes_are_converted(tmp_path):
    root = write_folder(tmp_path / "data", per_class=6, size=20)
    write_folder(root / "test", per_class=2, size=20, seed=1)
    dm = ImageFolderDataModule(root=str(root), image_size=16, channels=1)
    dm.setup()
    assert dm.class_names == CLASSES and dm.num_train_images() == 18
    assert dm.test_set.images.shape == (6, 1, 16, 16) and dm.train_set.images.dtype == torch.uint8
    assert len(dm.train_set) + len(dm.val_set) == 18 and dm.test_source == f"the images of {root / 'test'}"
    mean = dm.train_set.images.double().mean().item() / 255
    assert dm.spec().mean == pytest.approx((mean,)) and dm.spec().channels == 1


def test_mixed_sizes_need_an_image_size(tmp_path):
    root = write_folder(tmp_path / "data", per_class=3)
    Image.new("RGB", (40, 40)).save(root / "circle" / "big.png")
    with pytest.raises(ConfigError, match=r"big.png is 40x40 but .* is 32x32: .* data.image_size"):
        ImageFolderDataModule(root=str(root)).setup()
    dm = ImageFolderDataModule(root=str(root), image_size=24)
    dm.setup()
    assert dm.spec().image_size == 24


def break_folder(root, how: str) -> str:
    """Spoil a good folder one way; returns what the refusal must name."""
    if how == "empty folder":
        for path in sorted(root.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        return "no class folder"
    if how == "one class":
        for name in CLASSES[1:]:
            for path in (root / name).iterdir():
                path.unlink()
            (root / name).rmdir()
        return "only the class folder 'circle'"
    if how == "empty class":
        (root / "empty").mkdir()
        return f"{root / 'empty'} holds no images"
    if how == "truncated image":
        data = (root / "square" / "1.png").read_bytes()
        (root / "square" / "1.png").write_bytes(data[: len(data) // 2])
        return "square/1.png is not a PNG, JPEG or BMP image"
    if how == "corrupt image":
        (root / "square" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
        return "square/2.png is not a PNG, JPEG or BMP image"
    (root / "stripes" / "notes.txt").write_text("not an image")
    return "stripes/notes.txt is not a PNG, JPEG or BMP image"


@pytest.mark.parametrize(
    "how", ["empty folder", "one class", "empty class", "truncated image", "corrupt image", "non-image file"]
)
def test_bad_folders_are_refused_naming_the_file_and_nothing_is_written(tmp_path, how):
    root = write_folder(tmp_path / "data", per_class=3)
    expected = break_folder(root, how)
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        ImageFolderDataModule(root=str(root), data_dir=str(tmp_path / "cache")).spec()
    assert snapshot(tmp_path) == before


def test_the_train_command_refuses_bad_data_in_one_line(tmp_path):
    root = write_folder(tmp_path / "data", per_class=2)
    (root / "circle" / "0.png").write_bytes(b"not a png")
    done = run_cli(
        "train.py", "data=image_folder", f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}", check=False
    )
    assert_refused(done, "circle/0.png is not a PNG, JPEG or BMP image")
