"""Checkpoints read back: every checkpoint corrupted every way we can generate. Each case ends in a one-line UserError
naming the file (every file left as it was), or succeeds with the right output. The cases call the real entries
in-process: evaluate(cfg), predict_images(cfg), check_config (a resume)."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

from mnist_lit.checkpoints import load_classifier
from mnist_lit.config.checks import check_config, command_config
from mnist_lit.config.schema import plain
from mnist_lit.errors import UserError
from mnist_lit.evaluation.evaluate import evaluate
from mnist_lit.lit_module import DigitClassifier
from mnist_lit.predict import predict_images
from tests.conftest import (
    TRAIN,
    assert_refused,
    compose_train,
    refused_or_right,
    run_cli,
    same_accuracy,
    same_prediction,
    snapshot,
    synthetic_overrides,
)

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
def resume_config(synthetic, trained):
    """train.py's config resuming the run (ckpt_path set per case)."""
    return compose_train(*synthetic_overrides(synthetic), *RESUME, f"ckpt_path={trained}/checkpoints/last.ckpt")


def accepted(result: Any) -> None:
    assert isinstance(result, L.LightningDataModule)  # check_config passed: the resume would start


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


def test_cli_evaluate_an_empty_checkpoint(run_copy):
    best = run_copy / "checkpoints" / "best.ckpt"
    best.write_bytes(b"")
    before = snapshot(run_copy)
    assert_refused(run_cli("evaluate.py", f"ckpt_path={best}", "tensorboard=false", check=False), str(best))
    assert snapshot(run_copy) == before


def test_cli_predict_with_a_reshaped_weight(run_copy, reference):
    best = run_copy / "checkpoints" / "best.ckpt"
    rewrite(best, tensor_change(WEIGHTS[0], "reshaped"))
    done = run_cli("mnist_lit.predict", f"ckpt_path={best}", f"images={reference['image']}", check=False)
    assert_refused(done, "its state_dict does not fit model.arch=mlp with")


class _Payload:
    """Unpickling this creates a file: proof that code in a checkpoint ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_is_refused_and_does_not_run(synthetic, tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"hyper_parameters": {"model": {"arch": "mlp"}}, "payload": _Payload(str(marker))}, evil)
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}/run", f"ckpt_path={evil}",
                   check=False)  # fmt: skip
    assert done.returncode == 2
    assert f"ckpt_path='{evil}'" in done.stderr and "weights_only=True" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()

    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        load_classifier(str(evil))
    assert not marker.exists()
