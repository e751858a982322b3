"""The checks between keys and with the environment: precisions that cast the weights, extreme sizes, a GPU that is
not there, a resume from another model's checkpoint."""

from __future__ import annotations

import pytest
import torch
from omegaconf import DictConfig

from mnist_lit.config.checks import check_config
from mnist_lit.errors import ConfigError
from mnist_lit.training import build
from tests.conftest import ROOT, compose_train, run_cli, set_value, synthetic_overrides, train_in_process
from tests.data.test_image_folder import write_folder


@pytest.mark.parametrize("precision", ["64-true", "64", "bf16-true", "16-true"])
def test_precisions_that_cast_the_weights_are_refused(train_config: DictConfig, precision: str) -> None:
    """The networks get float32 images: weights of another type cannot take them (Lightning accepts the name)."""
    with pytest.raises(ConfigError, match=r"trainer.precision=.* casts the weights to another type"):
        check_config(set_value(train_config, "trainer.precision", precision))


def config_with(synthetic, *overrides: str) -> DictConfig:
    """train.py's config with ``overrides``, reading the synthetic data."""
    cfg = compose_train(f"data.data_dir={synthetic['data_dir']}", *overrides)
    cfg.data.checksums = synthetic["checksums"]
    return cfg


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data.val_fraction=0.0001", "data.val_fraction=0.0001 leaves the validation split empty (500 images"),
        ("data.val_fraction=0.9999", "data.val_fraction=0.9999 leaves the training split empty"),
        ("trainer.limit_train_batches=0", "trainer.limit_train_batches=0 is not allowed: give a fraction"),
        ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches=1.5 is not allowed"),
        ("trainer.limit_train_batches=-3", "trainer.limit_train_batches=-3 is not allowed"),
        ("trainer.limit_val_batches=0.001", "trainer.limit_val_batches=0.001 leaves no batch: the epoch has 1 batches"),
        ("trainer.limit_train_batches=0.01", "trainer.limit_train_batches=0.01 leaves no batch"),
        # what Lightning refuses only late: after training, at the start of the fit, at the first checkpoint
        ("+trainer.limit_test_batches=0", "(the test of best.ckpt after training needs at least one)"),
        ("+trainer.val_check_interval=14", "val_check_interval=14 is not allowed: an epoch has 13 training batches"),
        (f"callbacks.model_checkpoint.dirpath={ROOT / 'README.md'}", "README.md is a file, not a directory"),
        ("optimizer.lr=inf", "optimizer.lr=inf is not allowed"),
        ("trainer.precision=bogus", "trainer.precision='bogus' is not allowed: lightning.pytorch.Trainer takes one of"),
        ("run_name=a/b", "run_name='a/b' is not allowed: it names one folder"),
        ("run_name=..", "run_name='..' is not allowed"),
        ("data.split_seed=-1", "data.split_seed=-1 is not allowed"),
        ("threads=0", "threads=0 is not allowed: it must be an integer or null in [1, inf)"),
        ("threads=true", "threads=true is not allowed: it must be an integer or null"),
        ("model.label_smoothing=1.5", "model.label_smoothing=1.5 is not allowed: it must be a number in [0, 1)"),
        ("model.label_smoothing=-0.1", "model.label_smoothing=-0.1 is not allowed"),
    ],
)
def test_config_extremes_are_refused(synthetic, override, expected):
    with pytest.raises(ConfigError) as info:
        check_config(config_with(synthetic, override))
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("trainer.accelerator=abacus", "You selected an invalid accelerator name"),
        pytest.param(
            "trainer.accelerator=gpu",
            "No supported gpu backend",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU is there"),
        ),
    ],
)
def test_an_accelerator_lightning_refuses_is_refused_when_the_trainer_is_built(synthetic, override, expected):
    """What the Trainer refuses is its own to say: one ConfigError naming the group, before anything is written."""
    cfg = config_with(synthetic, override)
    check_config(cfg)
    with pytest.raises(ConfigError, match=f"^trainer cannot be built with these settings: .*{expected}"):
        build(cfg)


def test_checkpoint_of_the_other_model_is_refused(mlp_checkpoint, synthetic, tmp_path):
    done = run_cli("train.py", *synthetic_overrides(synthetic), "model=cnn", f"ckpt_path={mlp_checkpoint}",
                   f"hydra.run.dir={tmp_path}", check=False)  # fmt: skip
    assert done.returncode == 2
    assert "holds a model.arch='mlp' checkpoint, but model.arch='cnn'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def mlp_checkpoint(synthetic, tmp_path) -> str:
    run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}/mlp", "trainer.max_epochs=1")
    return str(tmp_path / "mlp" / "checkpoints" / "last.ckpt")


def test_a_folder_is_sized_by_its_files_and_resumed_only_from_the_same_folder(tmp_path):
    folder = write_folder(tmp_path / "shapes", per_class=4)  # 12 images, 11 after the held-out test image
    overrides = ("data=image_folder", f"data.root={folder}", "data.data_dir=/proc/not-writable", "model.hidden=8")
    check_config(compose_train(*overrides))  # no data folder is needed: nothing is downloaded
    with pytest.raises(ConfigError, match=r"data.val_fraction=0.01 leaves the validation split empty \(11 images"):
        check_config(compose_train(*overrides, "data.val_fraction=0.01"))
    run = tmp_path / "run"
    train_in_process(run, *overrides[:2], *overrides[3:], "trainer.max_epochs=1")
    other = write_folder(tmp_path / "other", per_class=4)
    resumed = (f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=2")
    check_config(compose_train(*overrides, *resumed))
    with pytest.raises(ConfigError, match=f"data.root={other}: it was trained with data.root={folder}"):
        check_config(compose_train("data=image_folder", f"data.root={other}", "model.hidden=8", *resumed))
