"""A generated attack on the configs: every leaf key of the composed train, eval and predict configs gets wrong
values of every kind. Each must be refused by the checks with an ``Error:`` naming the key, or be accepted and
then build (data module, model, trainer) as train.py would build it. Anything else (another exception type, a
refusal that names some other key) is a hole in the checks.

The run directory guard's own cases (interpolations that fail, sweep job folders, paths the system refuses)
run through the real CLI: exit status 2, one ``Error:`` line, no traceback, every earlier file byte-identical.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from mnist_lit.config.checks import check_config, check_eval_config, check_predict_config, command_config
from mnist_lit.errors import ConfigError, UserError
from mnist_lit.evaluation.evaluate import SPLITS
from mnist_lit.predict import INVERT
from mnist_lit.training import build
from tests.conftest import assert_refused, compose_train, run_cli, snapshot, synthetic_overrides

LONG_NAME = "x" * 300  # longer than any file name the system allows (255 bytes)


def wrong_values(value: Any) -> list[Any]:
    """Values of the wrong type or out of any sensible range for a key whose value is ``value``."""
    if isinstance(value, bool):
        return ["maybe", 1]
    if isinstance(value, int):
        return ["abc", 1.5, -1, 10**12, None]
    if isinstance(value, float):
        return ["abc", -1.0, math.nan, math.inf, None]
    if isinstance(value, str):
        return [2024, [1], "", LONG_NAME]
    if isinstance(value, list):
        return ["abc", None]
    return ["abc", -1, [1]]  # null by default


def leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a plain config (lists count as leaves)."""
    if isinstance(node, dict):
        found = []
        for key, value in node.items():
            found += leaves(value, f"{prefix}{key}.")
        return found
    return [(prefix[:-1], node)]


def attack_cases(config: DictConfig, skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    plain = OmegaConf.to_container(config, resolve=False)
    plain.pop("hydra", None)
    return [(key, bad) for key, value in leaves(plain) if key not in skip for bad in wrong_values(value)]


def names_key(message: str, key: str) -> bool:
    """A refusal names the key it refuses: itself, or the group it belongs to (what a class refused)."""
    parts = key.split(".")
    return any(".".join(parts[:n]) in message for n in range(len(parts), 0, -1))


@pytest.fixture(scope="module")
def train_config(synthetic, tmp_path_factory) -> DictConfig:
    """The composed train config on the synthetic data, with Hydra's settings as a run would have them."""
    run_dir = tmp_path_factory.mktemp("attack") / "run"
    cfg = compose_train(*synthetic_overrides(synthetic), f"hydra.run.dir={run_dir}")
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    return cfg


def set_value(cfg: DictConfig, key: str, value: Any) -> DictConfig:
    changed = copy.deepcopy(cfg)
    with open_dict(changed):
        OmegaConf.update(changed, key, value, merge=False, force_add=True)
    return changed


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "train_case" in metafunc.fixturenames:
        cfg = compose_train()  # the keys are those of the default config; values come from the fixture's
        cases = attack_cases(cfg)
        metafunc.parametrize("train_case", cases, ids=[f"{k}={v!r}"[:80] for k, v in cases])
    for name, command in (("eval_case", "eval"), ("predict_case", "predict")):
        if name in metafunc.fixturenames:
            cases = attack_cases(command_config(command))
            metafunc.parametrize(name, cases, ids=[f"{k}={v!r}"[:80] for k, v in cases])


def test_train_config_leaf(train_config: DictConfig, train_case: tuple[str, Any]) -> None:
    key, value = train_case
    cfg = set_value(train_config, key, value)
    HydraConfig.instance().set_config(cfg)
    try:
        try:
            check_config(cfg)
        except ConfigError as e:
            message = str(e)
            assert names_key(message, key), f"{key}={value!r}: the refusal names another key: {message}"
            assert "\n" not in message.strip(), message
            return
        # accepted: it must then build as train.py builds it
        build(cfg)
    finally:
        HydraConfig.instance().cfg = None


def test_eval_config_leaf(eval_case: tuple[str, Any]) -> None:
    key, value = eval_case
    cfg = set_value(command_config("eval"), key, value)
    try:
        check_eval_config(cfg, SPLITS)
    except UserError as e:
        assert names_key(str(e), key), f"{key}={value!r}: the refusal names another key: {e}"


def test_predict_config_leaf(predict_case: tuple[str, Any]) -> None:
    key, value = predict_case
    cfg = set_value(command_config("predict", ckpt_path="best.ckpt", images="a.png"), key, value)
    try:
        check_predict_config(cfg, INVERT)
    except UserError as e:
        assert names_key(str(e), key) or key in ("ckpt_path", "images"), f"{key}={value!r}: {e}"


# ---- the run directory guard, through the real CLI ------------------------------------------------------------


@pytest.fixture
def earlier_run(tmp_path: Path) -> Path:
    """A run directory as train.py leaves it (its files' contents do not matter to the guard)."""
    run = tmp_path / "earlier"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (run / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    (run / "metrics.json").write_text("{}\n")
    return run


GUARD_CASES = {
    "unset environment variable": (["run_name=${oc.env:MNIST_LIT_UNSET_VARIABLE}"], "run_name"),
    "wrong type into another run": (["trainer.max_epochs=abc"], "trainer.max_epochs"),
    "library refuses": (["trainer.devices=0"], "trainer"),
}


@pytest.mark.parametrize("overrides,expected", GUARD_CASES.values(), ids=GUARD_CASES.keys())
def test_refused_run_leaves_another_run_as_it_was(synthetic, earlier_run, overrides, expected) -> None:
    before = snapshot(earlier_run)
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={earlier_run}", *overrides, check=False)
    assert_refused(done, expected)
    assert snapshot(earlier_run) == before


def test_too_long_run_directory_name_is_refused(synthetic, tmp_path) -> None:
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path / LONG_NAME}", check=False)
    assert_refused(done, "more than the 255 a name can have")
    assert list(tmp_path.iterdir()) == []


SWEEP_CASES = {
    "one folder for every job": ("hydra.sweep.subdir=${run_name}", "the same folder"),
    "a folder outside the sweep": ("hydra.sweep.subdir=../../earlier", "outside hydra.sweep.dir"),
}


@pytest.mark.parametrize("subdir,expected", SWEEP_CASES.values(), ids=SWEEP_CASES.keys())
def test_sweep_job_folders_are_checked_before_any_job(synthetic, tmp_path, earlier_run, subdir, expected) -> None:
    before = snapshot(earlier_run)
    sweep = tmp_path / "sweeps" / "s"
    done = run_cli(
        "train.py", "-m", *synthetic_overrides(synthetic), f"hydra.sweep.dir={sweep}", subdir, "seed=1,2",
        check=False,
    )  # fmt: skip
    assert_refused(done, expected)
    assert not sweep.exists()
    assert snapshot(earlier_run) == before


@pytest.mark.parametrize("precision", ["64-true", "64", "bf16-true", "16-true"])
def test_precisions_that_cast_the_weights_are_refused(train_config: DictConfig, precision: str) -> None:
    """The networks get float32 images: weights of another type cannot take them (Lightning accepts the name)."""
    cfg = set_value(train_config, "trainer.precision", precision)
    HydraConfig.instance().set_config(cfg)
    try:
        with pytest.raises(ConfigError, match=r"trainer.precision=.* casts the weights to another type"):
            check_config(cfg)
    finally:
        HydraConfig.instance().cfg = None
