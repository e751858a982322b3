"""Prediction on image files: MNIST-style preparation, the CLI, agreement with the 28x28 originals on real MNIST,
Kaggle's test.csv, and your own images (a folder, a CSV) trained, evaluated, predicted and exported."""

from __future__ import annotations

import csv
import os
import subprocess

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image
from torchvision.datasets import MNIST

from mnist_lit.checkpoints import load_classifier
from mnist_lit.config.checks import PROJECT_ROOT, command_config
from mnist_lit.data.csv_table import PIXELS
from mnist_lit.errors import ConfigError, UserError
from mnist_lit.evaluation.evaluate import evaluate
from mnist_lit.evaluation.inference import classify
from mnist_lit.export import export_onnx
from mnist_lit.predict import find_images, predict_images, prepare
from tests.conftest import (
    assert_refused,
    digit_image,
    run_cli,
    synthetic_digits,
    synthetic_overrides,
    train_in_process,
)
from tests.data.test_csv_table import write_csv as write_table
from tests.data.test_image_folder import CLASSES, write_folder


def run_predict(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m mnist_lit.predict args``, as a user would run it."""
    return run_cli("mnist_lit.predict", *args, check=check)


def photo_of(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A 28x28 MNIST digit as a person's picture: dark on light, enlarged 3-8x, off-centre on a larger canvas."""
    scale = int(rng.integers(3, 9))
    side = 28 * scale
    big = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BICUBIC)
    width, height = side + int(rng.integers(20, 200)), side + int(rng.integers(20, 200))
    canvas = Image.new("L", (width, height), 255)
    canvas.paste(big, (int(rng.integers(0, width - side)), int(rng.integers(0, height - side))))
    return canvas


def test_prepare_lays_out_a_digit_like_mnist():
    # A dark bar (a "1") on a light, slightly grey 300x200 page, off-centre.
    page = np.full((200, 300), 230, dtype=np.uint8)
    page[20:120, 200:215] = 10
    prepared = prepare(Image.fromarray(page)).float()
    rows, cols = np.nonzero(prepared.numpy() > 0.2 * 255)
    assert rows.max() - rows.min() + 1 == 20  # the longer side fits the 20x20 box
    assert cols.max() - cols.min() + 1 < 20  # aspect ratio kept
    assert prepared.max() == 255 and prepared[0].sum() == 0  # white ink, black background
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centre = ((ys * prepared).sum() / prepared.sum(), (xs * prepared).sum() / prepared.sum())
    assert centre[0] == pytest.approx(14, abs=0.6) and centre[1] == pytest.approx(14, abs=0.6)


def test_prepare_keeps_an_mnist_digit_and_handles_modes_and_blanks():
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[4:24, 12:16] = 255  # already MNIST-like: 20 high, centred
    same = prepare(Image.fromarray(digit))
    assert torch.equal(same, torch.from_numpy(digit))
    rgb = Image.fromarray(255 - digit).convert("RGB")  # dark on light, three channels
    assert torch.equal(prepare(rgb), same)
    assert torch.equal(prepare(rgb, invert="never"), torch.zeros(28, 28, dtype=torch.uint8))  # light = background
    assert torch.equal(prepare(Image.new("L", (50, 50), 255)), torch.zeros(28, 28, dtype=torch.uint8))


def test_find_images_takes_files_folders_and_lists(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_images(str(tmp_path))] == ["a.jpg", "b.png"]
    assert [p.name for p in find_images([str(tmp_path / "b.png"), str(tmp_path)])] == ["b.png", "a.jpg", "b.png"]
    with pytest.raises(ConfigError, match="'nowhere.png' is not allowed: no such file or folder"):
        find_images("nowhere.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no image files"):
        find_images(str(tmp_path / "empty"))


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"images": "x.png"}, "ckpt_path is missing"),
        ({"ckpt_path": "missing.ckpt", "images": "x.png"}, "ckpt_path='missing.ckpt' is not allowed: no such file"),
        ({"ckpt_path": "a.ckpt"}, "images is missing"),
        (
            {"ckpt_path": "a.ckpt", "images": "x.png", "invert": "yes"},
            "invert='yes' is not allowed: it must be one of 'auto'",
        ),
        ({"ckpt_path": "a.ckpt", "images": "x.png", "top_k": 11}, "top_k=11 is not allowed"),
        ({"ckpt_path": "a.ckpt", "images": "x.png", "min_confidence": 1.5}, "min_confidence=1.5 is not allowed"),
        ({"ckpt_path": "a.ckpt", "images": "x.png", "verbose": "yes"}, "verbose='yes' is not allowed"),
        ({"ckpt_path": "a.ckpt", "images": 5}, "images=5 is not allowed: it must be a string or list[str]"),
        ({"ckpt_path": "a.ckpt", "images": [["x.png"]]}, "images=[['x.png']] is not allowed: it must be a string or"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(values, expected):
    with pytest.raises(ConfigError) as error:
        predict_images(command_config("predict", **values))
    assert expected in str(error.value)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("x" * 300 + ".png", "is 304 bytes long, more than the 255 a name can have"),  # no such file can exist
        ("pixels.npy", "not a readable image"),  # NaN and infinity, in a format that is no image
        (os.fsdecode(b"d\xff.png"), "its name is not UTF-8 text"),  # a folder's file: printed and in the CSV
    ],
)
def test_files_that_prediction_cannot_take_are_refused_in_one_line(trained, tmp_path, name, expected):
    folder = tmp_path / "images"
    folder.mkdir()
    if name.endswith(".npy"):
        np.save(folder / name, np.array([[np.nan, np.inf], [0, 1]], dtype=np.float32))
    elif len(name) < 255:
        Image.fromarray(digit_image()).save(folder / name)
    images = folder / name if name.endswith(".npy") or len(name) > 255 else folder
    done = run_predict(f"ckpt_path={trained / 'checkpoints' / 'best.ckpt'}", f"images={images}", check=False)
    assert_refused(done, expected)


def test_cli_rejects_bad_input_without_a_traceback(tmp_path):
    done = run_predict(f"ckpt_path={tmp_path / 'missing.ckpt'}", "images=x.png", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"Error: ckpt_path='{tmp_path / 'missing.ckpt'}' is not allowed: no such file" in done.stderr


@pytest.mark.real_data
def test_photos_of_real_test_digits_read_like_the_originals(tmp_path, capsys):
    """A model trained for one epoch on real MNIST reads >= 95% of 200 'photos' as it reads the 28x28 originals."""
    train_in_process(tmp_path / "run", "trainer.max_epochs=1")
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    test_set = MNIST(PROJECT_ROOT / "data", train=False)
    picked = torch.randperm(len(test_set.data), generator=torch.Generator().manual_seed(0))[:200]
    originals = test_set.data[picked]
    expected = classify(load_classifier(str(ckpt)), originals).argmax(dim=1).tolist()

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, digit in enumerate(originals.numpy()):
        suffix = ".jpg" if i % 2 else ".png"
        photo_of(digit, rng).save(folder / f"{i:03d}{suffix}", quality=90)
    output = tmp_path / "predictions.csv"
    predict_images(command_config("predict", ckpt_path=str(ckpt), images=str(folder), output=str(output)))
    printed = capsys.readouterr().out

    with open(output, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image", "digit", "confidence", "uncertain", "top2", "p2", "top3", "p3"]
    predicted = [int(row["digit"]) for row in rows]
    agreement = sum(p == e for p, e in zip(predicted, expected, strict=True)) / len(expected)
    with capsys.disabled():  # the figure the issue asks for, visible with pytest -s
        print(f"\nphotos read like their 28x28 originals: {agreement:.1%} of {len(expected)}")
    assert agreement >= 0.95, f"only {agreement:.1%} of the photos read like their originals"
    for row in rows:
        probs = [float(row["confidence"]), float(row["p2"]), float(row["p3"])]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
    assert "200 images read" in printed and rows[0]["image"] not in printed  # a folder gets a summary


@pytest.fixture(scope="module")
def small_model(synthetic, tmp_path_factory) -> tuple:
    """A checkpoint trained for an epoch on the synthetic digits, and a folder of 20 of them as PNG files."""
    base = tmp_path_factory.mktemp("predict")
    train_in_process(base / "run", *synthetic_overrides(synthetic), "trainer.max_epochs=1")
    folder = base / "digits"
    folder.mkdir()
    images, labels = synthetic_digits(20, seed=3)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:02d}_{labels[i]}.png")
    return base / "run" / "checkpoints" / "best.ckpt", folder


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_folder_gets_a_summary_above_a_line_per_image(small_model, tmp_path):
    ckpt, folder = small_model
    output = tmp_path / "all.csv"
    done = run_predict(f"ckpt_path={ckpt}", f"images={folder}", f"output={output}", "top_k=2")
    rows = read_rows(output)
    assert list(rows[0]) == ["image", "digit", "confidence", "uncertain", "top2", "p2"]  # no column twice
    out = done.stdout.splitlines()
    assert out[0] == "20 images read"
    counts = {int(line.split()[0]): int(line.split()[1]) for line in out if line[:5].strip().isdigit()}
    assert counts == {d: sum(int(r["digit"]) == d for r in rows) for d in {int(r["digit"]) for r in rows}}
    assert {r["uncertain"] for r in rows} == {"False"}  # min_confidence 0: nothing is uncertain
    # 20 images: after the table, one line per image in the CSV's order, then where the CSV went
    expected = [f"{r['image']}: {r['digit']}   (top 2: {r['digit']} {float(r['confidence']):.3f}, " for r in rows]
    lines = out[-21:-1]
    assert all(line.startswith(start) for line, start in zip(lines, expected, strict=True)), lines
    assert out.index(lines[0]) > max(i for i, line in enumerate(out) if line[:5].strip().isdigit())
    assert out[-1] == f"Predictions written to {output}"


def test_more_than_20_images_get_lines_only_with_verbose(small_model, tmp_path):
    ckpt, folder = small_model
    images = sorted(folder.iterdir())
    many = f"images=[{','.join(str(p) for p in [*images, images[0]])}]"  # 21 images
    done = run_predict(f"ckpt_path={ckpt}", many)
    assert done.stdout.splitlines()[0] == "21 images read" and str(images[1]) not in done.stdout
    assert "More than 20 images: one line per image with verbose=true" in done.stdout
    verbose = run_predict(f"ckpt_path={ckpt}", many, "verbose=true").stdout.splitlines()
    assert verbose[0] == "21 images read" and sum(line.startswith(str(folder)) for line in verbose) == 21
    assert not any("verbose=true" in line for line in verbose)


def test_min_confidence_marks_uncertain_answers_in_the_terminal_and_the_csv(small_model, tmp_path, capsys):
    ckpt, folder = small_model
    confidences = sorted(
        float(r["confidence"])
        for r in predict_images(command_config("predict", ckpt_path=str(ckpt), images=str(folder)))
    )
    threshold = (confidences[9] + confidences[10]) / 2  # half the answers below it
    capsys.readouterr()
    output = tmp_path / "marked.csv"
    values = {"ckpt_path": str(ckpt), "images": str(folder), "min_confidence": threshold, "output": str(output)}
    predict_images(command_config("predict", **values))
    summary = capsys.readouterr().out
    rows = read_rows(output)
    assert [r["uncertain"] == "True" for r in rows] == [float(r["confidence"]) < threshold for r in rows]
    assert f"Uncertain (probability below min_confidence={threshold}): 10 of 20" in summary
    predict_images(command_config("predict", **values, verbose=True))
    lines = capsys.readouterr().out.splitlines()
    for row in rows:
        marked = (
            f"{row['image']}: {row['digit']} uncertain   ("
            if row["uncertain"] == "True"
            else f"{row['image']}: {row['digit']}   ("
        )
        assert any(line.startswith(marked) for line in lines), marked


def test_predictions_csv_is_replaced_only_when_its_header_is_ours_whole(trained, reference, tmp_path):
    ckpt = str(trained / "checkpoints" / "best.ckpt")
    out = tmp_path / "out.csv"
    out.write_text("image,digit,confidence,uncertain,my notes\nmine,1,1,False,keep\n")  # starts like ours
    cfg = command_config("predict", ckpt_path=ckpt, images=str(reference["image"]), output=str(out), top_k=3)
    with pytest.raises(UserError, match="that file exists and is not a predictions CSV"):
        predict_images(cfg)
    assert out.read_text().endswith("keep\n")
    out.write_text("image,digit,confidence,uncertain,top2,p2\nold,1,1,False,2,0\n")  # an earlier one, top_k=2
    predict_images(cfg)
    assert out.read_text().splitlines()[0] == "image,digit,confidence,uncertain,top2,p2,top3,p3"


@pytest.mark.parametrize("size", [(1, 1), (40, 60)], ids=["1x1", "uniform"])
def test_image_without_a_digit_is_refused(plain_run, tmp_path, size):
    Image.new("L", size, 200).save(tmp_path / "blank.png")
    cfg = command_config("predict", ckpt_path=str(plain_run / "checkpoints" / "best.ckpt"), images=str(tmp_path))
    with pytest.raises(ConfigError, match=f"images: '{tmp_path / 'blank.png'}' is not allowed: it holds no digit"):
        predict_images(cfg)


def test_prediction_output_that_is_not_ours_is_refused(plain_run, tmp_path):
    Image.fromarray(np.pad(np.full((40, 8), 255, np.uint8), 10)).save(tmp_path / "one.png")
    (tmp_path / "user.csv").write_text("name,value\nmine,1\n")
    (tmp_path / "a-file").write_text("mine")
    ckpt = str(plain_run / "checkpoints" / "best.ckpt")
    cases = [
        (tmp_path, "is not allowed: it is a folder"),
        (tmp_path / "user.csv", "is not allowed: that file exists and is not a predictions CSV"),
        (tmp_path / "a-file" / "out.csv", "cannot be written: " + str(tmp_path / "a-file") + " is a file"),
    ]
    for output, expected in cases:
        cfg = command_config("predict", ckpt_path=ckpt, images=str(tmp_path / "one.png"), output=str(output))
        with pytest.raises(ConfigError, match=f"output='{output}' {expected}"):
            predict_images(cfg)
    assert (tmp_path / "user.csv").read_text() == "name,value\nmine,1\n"
    # an earlier predictions CSV is replaced
    out = tmp_path / "predictions.csv"
    cfg = command_config("predict", ckpt_path=ckpt, images=str(tmp_path / "one.png"), output=str(out))
    predict_images(cfg)
    predict_images(cfg)
    assert out.read_text().startswith("image,digit,confidence,uncertain") and len(out.read_text().splitlines()) == 2


def test_a_kaggle_test_csv_is_predicted_row_by_row_into_a_submission(small_model, tmp_path):
    ckpt, _ = small_model
    images, _ = synthetic_digits(30, seed=4)
    table = tmp_path / "test.csv"
    np.savetxt(table, images.reshape(30, -1), fmt="%d", delimiter=",", header=",".join(PIXELS), comments="")
    output = tmp_path / "submission.csv"
    rows = predict_images(command_config("predict", ckpt_path=str(ckpt), images=str(table), output=str(output)))
    expected = classify(load_classifier(str(ckpt)), torch.from_numpy(images)).argmax(dim=1).tolist()
    assert [(r["ImageId"], r["Label"]) for r in rows] == [(i, str(d)) for i, d in enumerate(expected, start=1)]
    lines = output.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and lines[1:] == [f"{i},{d}" for i, d in enumerate(expected, start=1)]
    predict_images(command_config("predict", ckpt_path=str(ckpt), images=str(table), output=str(output)))  # ours
    labelled = tmp_path / "train.csv"
    labelled.write_text("label," + ",".join(PIXELS) + "\n" + "1," + ",".join(["0"] * 784) + "\n")
    with pytest.raises(ConfigError, match=f"images='{labelled}' is not allowed: it has a column label"):
        predict_images(command_config("predict", ckpt_path=str(ckpt), images=str(labelled)))


def onnx_classes(model_path, images: np.ndarray) -> list[int]:
    """The classes onnxruntime's run of an export gives uint8 images (N, C, H, W)."""
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0].argmax(axis=1).tolist()


def test_your_own_images_train_evaluate_predict_and_export(tmp_path):
    """data=image_folder (32x32 RGB, three classes) and data=csv (Kaggle's train.csv and test.csv), each trained,
    evaluated, predicted and exported: the export gives the classes predict gives."""
    folder = write_folder(tmp_path / "shapes", per_class=12)  # 36 images: 4 held out to test on
    train_in_process(tmp_path / "folder", "data=image_folder", f"data.root={folder}", "model.hidden=16",
                     "trainer.max_epochs=1", "data.batch_size=8")  # fmt: skip
    summary = evaluate(command_config("eval", run_dir=str(tmp_path / "folder"), tensorboard=False))
    assert summary["images"] == 4
    ckpt = str(tmp_path / "folder" / "checkpoints" / "best.ckpt")
    rows = predict_images(command_config("predict", ckpt_path=ckpt, images=str(folder / "square")))
    assert len(rows) == 12 and {r["digit"] for r in rows} <= set(CLASSES) and rows[0]["top3"] in CLASSES
    export_onnx(command_config("export", ckpt_path=ckpt, output=str(tmp_path / "f.onnx"), data_dir=str(tmp_path)))
    pixels = np.stack([np.asarray(Image.open(r["image"]).convert("RGB")) for r in rows]).transpose(0, 3, 1, 2)
    assert [CLASSES[c] for c in onnx_classes(tmp_path / "f.onnx", pixels)] == [r["digit"] for r in rows]

    write_table(tmp_path / "train.csv")
    test = np.loadtxt(write_table(tmp_path / "labelled.csv", rows=40, seed=1), delimiter=",", skiprows=1)[:, 1:]
    np.savetxt(tmp_path / "test.csv", test, fmt="%d", delimiter=",", header=",".join(PIXELS), comments="")
    train_in_process(tmp_path / "csv", "data=csv", f"data.path={tmp_path / 'train.csv'}", "model.hidden=16",
                     "trainer.max_epochs=1")  # fmt: skip
    assert evaluate(command_config("eval", run_dir=str(tmp_path / "csv"), tensorboard=False))["images"] == 20
    ckpt = str(tmp_path / "csv" / "checkpoints" / "best.ckpt")
    output = tmp_path / "submission.csv"
    values = {"ckpt_path": ckpt, "images": str(tmp_path / "test.csv"), "output": str(output)}
    rows = predict_images(command_config("predict", **values))
    lines = output.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and lines[1:] == [f"{r['ImageId']},{r['Label']}" for r in rows]
    assert [r["ImageId"] for r in rows] == list(range(1, 41))
    export_onnx(command_config("export", ckpt_path=ckpt, output=str(tmp_path / "c.onnx"), data_dir=str(tmp_path)))
    images = test.astype(np.uint8).reshape(-1, 1, 28, 28)
    assert [str(c) for c in onnx_classes(tmp_path / "c.onnx", images)] == [r["Label"] for r in rows]
