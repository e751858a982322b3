"""Reading back what runs, sweeps and users leave: corrupted run folders and job files, images of every mode, files
that are no image, images too large to decode. Each ends in one line naming the file, or reads correctly."""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image

from mnist_lit.config.checks import command_config
from mnist_lit.errors import ConfigError
from mnist_lit.evaluation.evaluate import evaluate
from mnist_lit.predict import predict_images, prepare
from mnist_lit.sweeps.summary import csv_text, markdown, read_sweep
from tests.conftest import (
    assert_refused,
    digit_image,
    figures,
    one_job_sweep,
    refused_or_right,
    run_cli,
    same_accuracy,
    same_prediction,
)


def _digit_strokes() -> np.ndarray:
    digit = np.zeros((60, 40), dtype=np.uint8)
    digit[8:52, 16:24] = 255  # a "1": white ink, like MNIST
    return digit


def test_non_image_and_empty_files_are_rejected_by_name(tmp_path):
    from mnist_lit.errors import ConfigError
    from mnist_lit.predict import load_image

    (tmp_path / "notes.png").write_text("not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("notes.png", "empty.png"):
        with pytest.raises(ConfigError, match=f"'{tmp_path / name}' is not allowed: not a readable image"):
            load_image(tmp_path / name)


def test_huge_image_is_refused_before_it_is_decoded(tmp_path):
    from PIL import Image

    from mnist_lit.errors import ConfigError
    from mnist_lit.predict import load_image

    # 1-bit and all zero: a few KiB on disk, hundreds of MiB once decoded
    Image.new("1", (8000, 8000)).save(tmp_path / "large.png")
    with pytest.raises(ConfigError, match="8000x8000 pixels is more than 50,000,000"):
        load_image(tmp_path / "large.png")
    Image.new("1", (20000, 20000)).save(tmp_path / "huge.png")
    with pytest.raises(ConfigError, match="too large to decode safely"):
        load_image(tmp_path / "huge.png")


def test_a_transparent_background_reads_as_white_paper(tmp_path):
    from PIL import Image

    from mnist_lit.predict import load_image, prepare

    expected = prepare(Image.fromarray(_digit_strokes()))
    assert expected.sum() > 0
    # Black ink on a transparent background (as drawing programs save it): the paper is white.
    rgba = np.zeros((60, 40, 4), dtype=np.uint8)
    rgba[..., 3] = _digit_strokes()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "transparent.png")
    assert torch.equal(prepare(load_image(tmp_path / "transparent.png")), expected)


FILE_CHANGES = {
    "removed": None,
    "emptied": b"",
    "binary": bytes(range(256)) * 4,
    "list": b"[1, 2, 3]\n",
    "string": b'"abc"\n',
    "number": b"3\n",
}
RUN_FILES = (".hydra/config.yaml", "metrics.json", "checkpoints/best.ckpt")


def change_file(path: Path, content: bytes | None) -> None:
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)


def config_edit(key: str, value: Any) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        config = OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "config.yaml"))  # interpolations kept
        *parents, last = key.split(".")
        node = config
        for name in parents:
            node = node[name]
        node[last] = value
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))

    return edit


def metrics_edit(key: str, value: Any) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        metrics = json.loads((run / "metrics.json").read_text())
        metrics[key] = value
        (run / "metrics.json").write_text(json.dumps(metrics))  # NaN and Infinity as Python's json writes them

    return edit


RUN_CASES = [
    *[pytest.param(lambda run, f=f, c=c: change_file(run / f, c), (Path(f).name,), id=f"{f}-{name}")
      for f in RUN_FILES for name, c in FILE_CHANGES.items()],
    pytest.param(config_edit("data.val_fraction", "abc"), ("data.val_fraction",), id="config-data.val_fraction-string"),
    pytest.param(config_edit("data.split_seed", -1), ("data.split_seed",), id="config-data.split_seed-negative"),
    pytest.param(config_edit("data.batch_size", 2.5), ("data.batch_size",), id="config-data.batch_size-float"),
    pytest.param(config_edit("data", "abc"), ("config.yaml",), id="config-data-string"),
    pytest.param(config_edit("model", [1, 2]), ("config.yaml",), id="config-model-list"),
    pytest.param(config_edit("model.arch", 5), ("config.yaml",), id="config-model.arch-number"),
    pytest.param(config_edit("data._target_", "no.such.Module"), ("config.yaml",), id="config-data._target_-unknown"),
    *[pytest.param(metrics_edit(key, value), ("metrics.json",), id=f"metrics-{key}-{name}")
      for key, name, value in (("test/acc", "nan", math.nan), ("test/acc", "inf", math.inf),
                               ("val/acc", "string", "abc"), ("epochs", "float", 2.5), ("parameters", "list", [1]))],
]  # fmt: skip


@pytest.mark.parametrize("corrupt, names", RUN_CASES)
def test_run_folder(run_copy, reference, corrupt, names):
    corrupt(run_copy)
    cfg = command_config("eval", run_dir=str(run_copy), report_dir=str(run_copy.parent / "report"), tensorboard=False)
    refused_or_right(lambda: evaluate(cfg), run_copy, (str(run_copy), *names), same_accuracy(reference))


def lossless_file(image: Image.Image, base: Path) -> Path | None:
    """``image`` saved in the first lossless format that takes its mode and reads back in it, or None."""
    for suffix, options in ((".png", {}), (".tif", {}), (".webp", {"lossless": True})):
        path = base.with_suffix(suffix)
        try:
            image.save(path, **options)
            with Image.open(path) as back:
                if back.mode == image.mode:
                    return path
        except (OSError, ValueError, KeyError):
            pass
        path.unlink(missing_ok=True)
    return None


def in_mode(mode: str) -> Image.Image:
    """The digit image converted to ``mode`` (through RGBA or LA for the modes Pillow reaches only from those)."""
    gray = Image.fromarray(digit_image())
    for source in (gray, gray.convert("RGBA"), gray.convert("LA")):
        try:
            return source.convert(mode)
        except ValueError:
            continue
    raise AssertionError(f"Pillow cannot make a {mode} image")


@pytest.mark.parametrize("mode", sorted({*Image.MODES, "I;16"}))
def test_image_mode(trained, reference, tmp_path, mode):
    image = in_mode(mode)
    expected = prepare(Image.fromarray(digit_image()))
    assert torch.equal(prepare(image), expected), f"{mode} does not read like its grayscale original"
    path = lossless_file(image, tmp_path / f"digit-{mode.replace(';', '_')}")
    if path is not None:  # a file in that mode: the whole command
        cfg = command_config("predict", ckpt_path=str(trained / "checkpoints" / "best.ckpt"), images=str(path))
        refused_or_right(lambda: predict_images(cfg), tmp_path, (str(path),), same_prediction(reference))


def png_with_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` (its IHDR checksum recomputed)."""
    import io

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.mark.parametrize(
    "name, content",
    [
        ("zero.png", b""),
        ("text.png", b"not an image at all\n"),
        ("truncated.png", "truncated"),
        ("huge.png", png_with_size(8_000, 8_000)),  # past the command's own limit
        ("bomb.png", png_with_size(60_000, 60_000)),  # past Pillow's decompression-bomb limit
        ("no-pixels.png", png_with_size(0, 28)),  # Pillow's own refusal
        ("binary.jpg", bytes(range(256)) * 8),
    ],
    ids=["zero-byte", "text", "truncated", "huge", "bomb", "no-pixels", "binary"],
)
def test_image_file_that_is_no_image(trained, tmp_path, name, content):
    path = tmp_path / name
    if content == "truncated":
        Image.fromarray(digit_image()).save(path)
        content = path.read_bytes()[: len(path.read_bytes()) // 2]
    path.write_bytes(content)
    cfg = command_config("predict", ckpt_path=str(trained / "checkpoints" / "best.ckpt"), images=str(path))

    def wrong(rows: Any) -> None:
        raise AssertionError(f"{name} was read as an image: {rows}")

    assert refused_or_right(lambda: predict_images(cfg), tmp_path, (str(path),), wrong) == "refused"


JOB_FILES = {"overrides.yaml": "1_job/.hydra/overrides.yaml", "hydra.yaml": "1_job/.hydra/hydra.yaml",
             "metrics.json": "1_job/metrics.json", "error.txt": "2_job/error.txt"}  # fmt: skip


JOB_CASES = [
    *[pytest.param(f, c, id=f"{f}-{name}") for f in JOB_FILES for name, c in FILE_CHANGES.items()],
    *[pytest.param("metrics.json", json.dumps({**figures(0.9, 0.89, 200), key: v}).encode(), id=f"metrics-{key}-{n}")
      for key, n, v in (("val/acc", "nan", math.nan), ("val/acc", "inf", math.inf), ("test/acc", "string", "abc"),
                        ("parameters", "float", 1.5), ("epochs", "list", [2]), ("threads", "bool", True))],
    pytest.param("hydra.yaml", b"hydra:\n  job:\n    num: abc\n", id="hydra.yaml-job.num-string"),
]  # fmt: skip


@pytest.mark.parametrize("name, content", JOB_CASES)
def test_sweep_job_file(tmp_path, name, content):
    root = one_job_sweep(tmp_path)
    change_file(root / JOB_FILES[name], content)

    def right(jobs: Any) -> None:
        by_num = {job.num: job for job in jobs}
        assert jobs[0].num == 0 and jobs[0].status == "ok" and jobs[0].figures["val/acc"] == 0.95
        assert by_num[2].status == "failed"
        job = by_num.get(1)
        if name == "error.txt":
            assert job.status == "ok"
        elif job is not None and job.status != "ok":  # the job's own file is wrong: it is failed, naming the file
            assert job.status == "failed" and name in job.error and "\n" not in job.error, job.error
        elif job is not None:
            assert job.figures["val/acc"] == 0.90
        lines = csv_text(jobs).splitlines()
        assert lines[0].startswith("rank,job,status") and len(lines) == 1 + len(jobs)
        assert markdown(root, jobs).startswith("# Sweep summary: ")

    # the summary's reading (read_sweep) and its texts; its writing is tested below
    refused_or_right(lambda: read_sweep(root), root, (name,), right)


def test_corrupt_run_files_are_reported_not_raised(plain_run_copy):
    (plain_run_copy / "metrics.json").write_text("{not json")
    with pytest.raises(ConfigError, match="its metrics.json cannot be read"):
        evaluate(command_config("eval", run_dir=str(plain_run_copy), tensorboard=False))
    (plain_run_copy / ".hydra" / "config.yaml").write_text("model: [unclosed")
    done = run_cli("evaluate.py", f"run_dir={plain_run_copy}", check=False)
    config = plain_run_copy / ".hydra" / "config.yaml"
    assert_refused(done, f"run_dir='{plain_run_copy}' is not allowed: {config} cannot be read")
    assert not (plain_run_copy / "report").exists()


def test_float_and_cmyk_images_read_like_grayscale(tmp_path):  # every other mode: test_image_mode
    from mnist_lit.predict import load_image, prepare

    digit = np.zeros((60, 40), dtype=np.uint8)
    digit[8:52, 16:24] = 255
    expected = prepare(Image.fromarray(digit))
    Image.fromarray(digit.astype(np.float32) / 255.0, "F").save(tmp_path / "float.tif")  # 0..1 floats
    Image.fromarray(255 - digit).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    assert torch.equal(prepare(load_image(tmp_path / "float.tif")), expected)
    cmyk = prepare(load_image(tmp_path / "cmyk.jpg")).float()  # JPEG: close, not exact
    assert (cmyk - expected.float()).abs().mean() < 8
