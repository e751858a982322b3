"""Every file the commands read back, corrupted every way we can generate: each case ends in a one-line UserError
naming the file (and every file left as it was), or succeeds with the right output.

One real run is trained per module on the synthetic digits; each case corrupts a copy of it in tmp_path and calls
the real entry in-process: evaluate(cfg), predict_images(cfg), check_config (a resume), write_summary (a sweep).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image

from mnist_lit.config.checks import check_config, command_config
from mnist_lit.config.schema import plain
from mnist_lit.errors import UserError
from mnist_lit.evaluation.evaluate import evaluate
from mnist_lit.evaluation.report import check_report_dir
from mnist_lit.lit_module import DigitClassifier
from mnist_lit.predict import predict_images, prepare
from mnist_lit.sweeps.summary import SUMMARY_FILES, csv_text, markdown, read_sweep, write_summary
from tests.conftest import (
    assert_refused,
    compose_train,
    figures,
    make_job,
    run_cli,
    snapshot,
    synthetic_overrides,
    train_in_process,
)

TRAIN = ("model.hidden=16", "trainer.max_epochs=1")
RESUME = ("model.hidden=16", "trainer.max_epochs=3")


# The cases are generated at collection from what training saves: the hyper-parameters are the composed
# config's groups (as training.build passes them to the module), the weights the module's own state_dict.
def saved_hyper_parameters() -> dict[str, Any]:
    cfg = compose_train(*TRAIN)
    return {
        "model": plain(cfg.model),
        "optimizer": plain(cfg.optimizer),
        "scheduler": plain(cfg.get("scheduler")),
        "dataset": cfg.data.dataset,
    }


HPARAMS = saved_hyper_parameters()
WEIGHTS = list(DigitClassifier(**copy.deepcopy(HPARAMS)).state_dict())


def leaves(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf of a nested mapping, with its path."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    else:
        yield path, node


def retypes(value: Any) -> list[tuple[str, Any]]:
    """The wrong values a leaf is given: removed (None marks it), another type, a float for an int, a negative."""
    cases: list[tuple[str, Any]] = [("string", "abc"), ("list", [1, 2]), ("null", None)]
    if isinstance(value, int) and not isinstance(value, bool):
        cases.append(("float", float(value) + 0.5))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        cases.append(("negative", -abs(value) - 1))
    return cases


REMOVED = object()
HPARAM_CASES = [
    pytest.param(path, change, id=f"hyper_parameters.{'.'.join(path)}-{name}")
    for path, value in leaves(HPARAMS)
    for name, change in [("removed", REMOVED), *retypes(value)]
]


def write_legacy(path: Path, checkpoint: dict) -> None:
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)  # torch.save's documented older format


def set_path(checkpoint: dict, path: tuple[str, ...], change: Any) -> None:
    node = checkpoint["hyper_parameters"]
    for key in path[:-1]:
        node = node[key]
    assert path[-1] in node, f"training no longer saves hyper_parameters.{'.'.join(path)}: regenerate the cases"
    if change is REMOVED:
        del node[path[-1]]
    else:
        node[path[-1]] = change


def tensor_change(name: str, how: str) -> Callable[[dict], None]:
    def change(checkpoint: dict) -> None:
        weights = checkpoint["state_dict"]
        assert name in weights, f"the module no longer has {name}: regenerate the cases"
        tensor = weights.pop(name)
        if how == "reshaped":
            weights[name] = tensor.reshape(-1)[:-1] if tensor.numel() > 1 else tensor.reshape(1, 1)
        elif how == "renamed":
            weights[name + "_renamed"] = tensor

    return change


def replace(key: str, value: Any) -> Callable[[dict], None]:
    def change(checkpoint: dict) -> None:
        if value is REMOVED:
            del checkpoint[key]
        else:
            checkpoint[key] = value

    return change


def non_finite(checkpoint: dict) -> None:
    checkpoint["state_dict"][WEIGHTS[0]] = torch.full_like(checkpoint["state_dict"][WEIGHTS[0]], math.nan)


# (id, change of the checkpoint's dict) — the bytes-level corruptions are below
STRUCTURE_CASES = [
    *[pytest.param(tensor_change(name, how), id=f"state_dict.{name}-{how}")
      for name in WEIGHTS for how in ("reshaped", "removed", "renamed")],
    pytest.param(replace("state_dict", REMOVED), id="state_dict-removed"),
    pytest.param(replace("state_dict", {}), id="state_dict-empty"),
    pytest.param(replace("state_dict", [1, 2]), id="state_dict-list"),
    pytest.param(replace("hyper_parameters", REMOVED), id="hyper_parameters-removed"),
    pytest.param(replace("hyper_parameters", "abc"), id="hyper_parameters-string"),
    *[pytest.param(replace(key, value), id=f"{key}-{name}") for key in ("epoch", "global_step")
      for name, value in (("string", "abc"), ("float", 1.5), ("negative", -3), ("null", None), ("list", [0]))],
    pytest.param(replace("optimizer_states", REMOVED), id="optimizer_states-removed"),
    pytest.param(non_finite, id="weights-nan"),
]  # fmt: skip
BYTE_CASES = ["truncated-16", "truncated-half", "truncated-minus-1", "empty", "random", "legacy", "a-list", "text"]
EVALUATED = {"truncated-half", "empty", "random", "legacy", "state_dict-removed", "epoch-string", "weights-nan",
             f"state_dict.{WEIGHTS[0]}-reshaped", "hyper_parameters.model.hidden-string"}  # fmt: skip


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory) -> Path:
    """One real run (1 epoch of a small MLP on the synthetic digits), with its saved config, metrics and checkpoints."""
    run_dir = tmp_path_factory.mktemp("attack") / "run"
    train_in_process(run_dir, *synthetic_overrides(synthetic), *TRAIN)
    return run_dir


def digit_image() -> np.ndarray:
    digit = np.zeros((60, 40), dtype=np.uint8)
    digit[8:52, 16:24] = 255  # a "1", white on black like MNIST
    digit[8:14, 10:16] = 255
    return digit


@pytest.fixture(scope="module")
def reference(trained, tmp_path_factory) -> dict:
    """What the intact run gives: its prediction for the digit image and its test accuracy."""
    base = tmp_path_factory.mktemp("reference")
    Image.fromarray(digit_image()).save(base / "digit.png")
    rows = predict_images(command_config("predict", ckpt_path=str(trained / "checkpoints/best.ckpt"),
                                         images=str(base / "digit.png")))  # fmt: skip
    report = evaluate(command_config("eval", run_dir=str(trained), report_dir=str(base / "report"), tensorboard=False))
    return {"row": rows[0], "accuracy": report["accuracy"], "image": base / "digit.png"}


@pytest.fixture(scope="module")
def resume_config(synthetic, trained):
    """train.py's config resuming the run (ckpt_path set per case)."""
    return compose_train(*synthetic_overrides(synthetic), *RESUME, f"ckpt_path={trained}/checkpoints/last.ckpt")


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(trained, target)
    return target


def refused_or_right(call: Callable[[], Any], root: Path, names: tuple[str, ...], right: Callable[[Any], None]) -> str:
    """Run ``call``: a UserError must be one line naming one of ``names``, with every file under ``root`` kept;
    success must pass ``right``. Returns "refused" or "ran"."""
    before = snapshot(root)
    try:
        result = call()
    except UserError as e:
        message = str(e)
        assert message and "\n" not in message, f"not one line: {message!r}"
        assert any(name in message for name in names), f"{message!r} names none of {names}"
        assert snapshot(root) == before, "a refused command changed a file"
        return "refused"
    after = snapshot(root)
    assert {k: after.get(k) for k in before} == before, "a command changed a file it did not own"
    right(result)
    return "ran"


def same_prediction(reference: dict) -> Callable[[Any], None]:
    def right(rows: Any) -> None:
        assert rows[0]["digit"] == reference["row"]["digit"]
        assert rows[0]["confidence"] == pytest.approx(reference["row"]["confidence"], abs=1e-5)

    return right


def same_accuracy(reference: dict) -> Callable[[Any], None]:
    def right(report: Any) -> None:
        assert report["accuracy"] == pytest.approx(reference["accuracy"])

    return right


def accepted(result: Any) -> None:
    assert result is None  # check_config returns nothing: the resume would start


def attack_checkpoint(run_copy: Path, reference: dict, resume_config, case: str, names: tuple[str, ...]) -> list[str]:
    """The corrupted best.ckpt and last.ckpt of ``run_copy`` through predict, a resume and (some cases) evaluate;
    what each did ("refused" or "ran")."""
    best, last = run_copy / "checkpoints" / "best.ckpt", run_copy / "checkpoints" / "last.ckpt"
    names = (str(best), str(last), *names)
    predict = command_config("predict", ckpt_path=str(best), images=str(reference["image"]))
    outcomes = [refused_or_right(lambda: predict_images(predict), run_copy, names, same_prediction(reference))]
    cfg = resume_config.copy()
    cfg.ckpt_path = str(last)
    outcomes.append(refused_or_right(lambda: check_config(cfg), run_copy, names, accepted))
    if case in EVALUATED:
        report_dir = run_copy.parent / "report"
        eval_cfg = command_config("eval", ckpt_path=str(best), report_dir=str(report_dir), tensorboard=False)
        outcomes.append(refused_or_right(lambda: evaluate(eval_cfg), run_copy, names, same_accuracy(reference)))
    return outcomes


def rewrite(path: Path, change: Callable[[dict], None]) -> None:
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)


@pytest.mark.parametrize("path, change", HPARAM_CASES)
def test_checkpoint_hyper_parameter(run_copy, reference, resume_config, request, path, change):
    for name in ("best.ckpt", "last.ckpt"):
        rewrite(run_copy / "checkpoints" / name, lambda c: set_path(c, path, change))
    attack_checkpoint(run_copy, reference, resume_config, request.node.callspec.id, (path[-1],))


@pytest.mark.parametrize("change", STRUCTURE_CASES)
def test_checkpoint_structure(run_copy, reference, resume_config, request, change):
    for name in ("best.ckpt", "last.ckpt"):
        rewrite(run_copy / "checkpoints" / name, change)
    case = request.node.callspec.id
    outcomes = attack_checkpoint(run_copy, reference, resume_config, case, ())
    # none of these is a checkpoint any command can use; without an optimizer state it still predicts
    expected = ["ran", "refused"] if case == "optimizer_states-removed" else ["refused"] * len(outcomes)
    assert outcomes == expected


@pytest.mark.parametrize("case", BYTE_CASES)
def test_checkpoint_bytes(run_copy, reference, resume_config, case):
    for name in ("best.ckpt", "last.ckpt"):
        path = run_copy / "checkpoints" / name
        data = path.read_bytes()
        if case.startswith("truncated"):
            length = {"truncated-16": 16, "truncated-half": len(data) // 2, "truncated-minus-1": len(data) - 1}[case]
            path.write_bytes(data[:length])
        elif case == "empty":
            path.write_bytes(b"")
        elif case == "random":
            path.write_bytes(np.random.default_rng(0).bytes(len(data)))
        elif case == "legacy":
            write_legacy(path, torch.load(path, weights_only=True))
        elif case == "a-list":
            torch.save([1, 2, 3], path)
        else:
            path.write_text("not a checkpoint\n")
    outcomes = attack_checkpoint(run_copy, reference, resume_config, case, ())
    assert outcomes == ["ran" if case == "legacy" else "refused"] * len(outcomes)


# The run folder that evaluate reads: .hydra/config.yaml, metrics.json, checkpoints/best.ckpt.

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


# Resuming: what may not change, and weights that went non-finite.


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data.split_seed=7", "data.split_seed=7: it was trained with data.split_seed=42"),
        ("data.val_fraction=0.3", "data.val_fraction=0.3: it was trained with data.val_fraction=0.2"),
        ("data.dataset=fashion_mnist", "data.dataset=fashion_mnist: it was trained with data.dataset=mnist"),
        ("optimizer.lr=0.01", "cannot be resumed with optimizer.lr=0.01: it was trained with optimizer.lr=0.001"),
    ],
)
def test_resume_refuses_a_changed_split_or_optimizer(synthetic, trained, override, expected):
    last = trained / "checkpoints" / "last.ckpt"
    check_config(compose_train(*synthetic_overrides(synthetic), *RESUME, f"ckpt_path={last}"))  # as trained: accepted
    with pytest.raises(UserError, match=expected.replace(".", r"\.")):
        check_config(compose_train(*synthetic_overrides(synthetic), *RESUME, f"ckpt_path={last}", override))


def test_resume_from_non_finite_weights_is_refused_naming_best(synthetic, run_copy):
    last = run_copy / "checkpoints" / "last.ckpt"
    rewrite(last, non_finite)
    before = snapshot(run_copy)
    with pytest.raises(UserError, match=f"its weights are not finite .*use {run_copy / 'checkpoints' / 'best.ckpt'}"):
        check_config(compose_train(*synthetic_overrides(synthetic), *RESUME, f"ckpt_path={last}"))
    assert snapshot(run_copy) == before


# Images: every mode Pillow has, and files that are no image.


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
        ("binary.jpg", bytes(range(256)) * 8),
    ],
    ids=["zero-byte", "text", "truncated", "huge", "bomb", "binary"],
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


# Sweep job folders: every file of a job, and the summary's own files.


def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    make_job(root, 0, ["model.filters=8"], metrics=figures(0.95, 0.94, 100))
    make_job(root, 1, ["model.filters=16"], metrics=figures(0.90, 0.89, 200))
    make_job(root, 2, ["model.filters=32"], error="ConfigError: model.filters=32 is not allowed\nTraceback ...")
    return root


JOB_FILES = {"overrides.yaml": "1_job/.hydra/overrides.yaml", "hydra.yaml": "1_job/.hydra/hydra.yaml",
             "metrics.json": "1_job/metrics.json", "error.txt": "2_job/error.txt"}  # fmt: skip
JOB_CASES = [
    *[pytest.param(f, c, id=f"{f}-{name}") for f in JOB_FILES for name, c in FILE_CHANGES.items()],
    *[pytest.param("metrics.json", json.dumps({**figures(0.9, 0.89, 200), key: v}).encode(), id=f"metrics-{key}-{n}")
      for key, n, v in (("val/acc", "nan", math.nan), ("val/acc", "inf", math.inf), ("test/acc", "string", "abc"),
                        ("parameters", "float", 1.5), ("epochs", "list", [2]))],
    pytest.param("hydra.yaml", b"hydra:\n  job:\n    num: abc\n", id="hydra.yaml-job.num-string"),
]  # fmt: skip


@pytest.mark.parametrize("name, content", JOB_CASES)
def test_sweep_job_file(tmp_path, name, content):
    root = sweep(tmp_path)
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


def test_summary_replaces_only_its_own_files(tmp_path):
    root = sweep(tmp_path)
    write_summary(root)
    write_summary(root)  # its own earlier files: replaced
    for name, content in [
        ("summary.md", b"# My notes on this sweep\n"),
        ("summary.csv", b"rank,job,status,my own column\n1,0,ok,x\n"),  # starts like the summary's header
        ("accuracy_vs_parameters.png", None),
    ]:
        path = root / name
        if content is None:
            Image.new("RGB", (840, 540), "white").save(path)  # a PNG of the same size, not the summary's plot
        else:
            path.write_bytes(content)
        before = snapshot(root)
        with pytest.raises(UserError, match=f"it holds {name} that this command did not write"):
            write_summary(root)
        assert snapshot(root) == before
        path.unlink()
    write_summary(root)
    assert all((root / name).is_file() for name in SUMMARY_FILES)


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


def test_report_folder_with_the_report_file_names_but_not_a_report_is_refused(tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "report.md").write_text("# My report\n")
    (mine / "classification_report.json").write_text("{}")
    with pytest.raises(UserError, match="holds files that are not an earlier report"):
        check_report_dir(mine, str(mine))


# Through the real commands: exit status 2, one Error line, no traceback.


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return run_cli(module, *args, check=False)


def test_cli_evaluate_an_empty_checkpoint(run_copy):
    best = run_copy / "checkpoints" / "best.ckpt"
    best.write_bytes(b"")
    before = snapshot(run_copy)
    assert_refused(run_cli("evaluate.py", f"ckpt_path={best}", "tensorboard=false", check=False), str(best))
    assert snapshot(run_copy) == before


def test_cli_predict_with_a_reshaped_weight(run_copy, reference):
    best = run_copy / "checkpoints" / "best.ckpt"
    rewrite(best, tensor_change(WEIGHTS[0], "reshaped"))
    done = run_module("mnist_lit.predict", f"ckpt_path={best}", f"images={reference['image']}")
    assert_refused(done, "its state_dict does not fit model.arch=mlp with")


def test_cli_sweep_summary_keeps_a_users_summary(tmp_path):
    root = sweep(tmp_path)
    (root / "summary.md").write_text("# mine\n")
    before = snapshot(root)
    assert_refused(run_module("mnist_lit.sweep_summary", str(root)), "summary.md that this command did not write")
    assert snapshot(root) == before
