"""Every setting of the project's own configs, declared once: its type, its allowed range and (in conf/) its default.

The networks declare theirs beside their code (``Config`` in each module of mnist_lit/models/); a class named by
``_target_`` (the Trainer, a callback, the optimizer) declares its own in its signature.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from mnist_lit.config.schema import setting
from mnist_lit.errors import ConfigError

# conf/cv/kfold.yaml's swept key: a sweep's jobs that differ in it alone are the folds of one setting
FOLD_KEY = "cv.fold"
Split = Literal["test", "val", "test_shifted"]  # what evaluate.py evaluates on
Invert = Literal["auto", "always", "never"]  # predict inverts images with a light background: by their border
FIGURE_IMAGES = 400  # the most images a report's figure shows: more would take minutes and gigabytes to draw


@dataclasses.dataclass(kw_only=True)
class PathSettings:
    """conf/paths/: where the project, the data and the logs are."""

    root_dir: str = setting(min_length=1)
    data_dir: str = setting(min_length=1)
    log_dir: str = setting(min_length=1)


@dataclasses.dataclass(kw_only=True)
class TrainSettings:
    """conf/train.yaml's own keys, and its groups (each group has its own checks)."""

    seed: int = setting(low=0, high=2**32 - 1)
    ckpt_path: str | None = None
    run_name: str = ""
    evaluate_after_fit: bool = False
    optimized_metric: str | None = None
    threads: int | None = setting(None, low=1)
    keep_freed_memory: bool = True
    module: Any = None
    paths: Any = None
    data: Any = None
    model: Any = None
    optimizer: Any = None
    scheduler: Any = None
    trainer: Any = None
    callbacks: Any = None
    logger: Any = None
    cv: Any = None  # conf/cv/: k-fold cross-validation, its folds the data module's (data.folds, data.fold)
    hydra: Any = None

    def __post_init__(self) -> None:
        name = self.run_name  # names one folder: not empty, no path separators, not . or ..
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ConfigError(
                f"run_name={name!r} is not allowed: it names one folder of logs/runs/, so it must be a plain name "
                "(letters, digits, _ - .), without / or \\"
            )


@dataclasses.dataclass(kw_only=True)
class DataSettings:
    """The data group's keys that every data module has (conf/data/); also what a run's saved config must hold."""

    dataset: str = "mnist"
    data_dir: str = setting(min_length=1)
    batch_size: int = setting(low=1)
    eval_batch_size: int = setting(low=1)
    val_fraction: float = setting(low=0, high=1, low_open=True, high_open=True)
    split_seed: int = setting(low=0, high=2**63 - 1)
    num_workers: int = setting(low=0)
    pin_memory: bool = False
    on_device: bool = False


@dataclasses.dataclass(kw_only=True)
class OptimizerSettings:
    """What every optimizer config must get right; an optimizer's other arguments are its own."""

    lr: float = setting(low=0, low_open=True)
    weight_decay: float = setting(0.0, low=0)


@dataclasses.dataclass(kw_only=True)
class TrainerSettings:
    """The trainer keys the project relies on; the others are ``lightning.Trainer``'s own."""

    max_epochs: int = setting(low=1)


@dataclasses.dataclass(kw_only=True)
class EvalSettings:
    """conf/eval.yaml (``split`` is checked against the splits evaluation offers)."""

    run_dir: str | None = None
    ckpt_path: str | None = None
    ckpt_paths: list[str] | None = None
    split: Split = "test"
    tta: bool = False
    report_dir: str | None = None
    misclassified: int = setting(low=1, high=FIGURE_IMAGES)
    samples: int = setting(low=1, high=FIGURE_IMAGES)
    top_confusions: int = setting(low=1, high=90)  # a confusion matrix of 10 classes has 90 off-diagonal cells
    tensorboard: bool = True


@dataclasses.dataclass(kw_only=True)
class PredictSettings:
    """conf/predict.yaml (the files ``images`` names are checked when they are read)."""

    ckpt_path: str | None = None
    images: str | list[str] | None = None  # an image file or a folder of images, or a list of them
    invert: Invert = "auto"
    top_k: int = setting(low=1, high=10)
    min_confidence: float = setting(low=0, high=1)
    verbose: bool = False
    output: str | None = None

    def __post_init__(self) -> None:
        if not self.ckpt_path:
            raise ConfigError("ckpt_path is missing: give ckpt_path=<run directory>/checkpoints/best.ckpt")
        if not self.images:
            raise ConfigError("images is missing: give images=<an image file, a folder of images, or [a.png,b.jpg]>")


@dataclasses.dataclass(kw_only=True)
class ServeSettings:
    """conf/serve.yaml (the checkpoint and the ONNX file are checked when they are read)."""

    ckpt_path: str | None = None
    backend: Literal["torch", "onnx"] = "torch"
    onnx_path: str | None = None
    host: Literal["127.0.0.1", "0.0.0.0", "::"] = "127.0.0.1"  # the addresses LitServe binds to (conf/serve.yaml)
    port: int = setting(low=1024, high=65535)  # LitServe refuses the privileged ports and port 0
    max_batch_size: int = setting(low=1, high=4096)
    batch_timeout: float = setting(low=0, high=1)  # seconds the first request of a batch waits for others
    timeout: float = setting(low=0, high=3600, low_open=True)  # seconds a request may wait for the model
    max_body: int = setting(low=1, high=100_000_000)  # bytes
    max_queue: int = setting(low=1)  # requests waiting or being answered at once; more get 503
    threads: int = setting(low=1)  # the model's threads in the inference worker
    hydra: Any = None

    def __post_init__(self) -> None:
        if self.batch_timeout >= self.timeout:
            raise ConfigError(
                f"batch_timeout={self.batch_timeout} is not allowed: it must be less than timeout={self.timeout}"
            )
