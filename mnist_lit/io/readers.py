"""Reading back the files a run, a sweep or a user leaves, one function per kind of file: every way a file can be
wrong becomes one UserError naming it, never a parser's traceback (checkpoints: ``mnist_lit.checkpoints``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from mnist_lit.config import resolvers  # noqa: F401  a run's saved config uses the project's resolvers
from mnist_lit.config.schema import finite, fits, typed
from mnist_lit.config.settings import DataSettings
from mnist_lit.errors import ConfigError, UserError, describe

MAX_PIXELS = 50_000_000  # a 48-megapixel photo fits; decoding anything larger could exhaust memory
# metrics.json's figures that readers use as numbers, each finite or null (not measured)
METRIC_NUMBERS = {
    **dict.fromkeys(("val/acc", "val/loss", "test/acc", "test/loss", "fit_seconds"), float),
    **dict.fromkeys(("epochs", "steps", "parameters", "threads", "best_epoch", "pruned_epoch"), int),
}


class FileProblem(UserError):
    """What is wrong with one file; the callers put it into the sentence that names their key."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path} {problem}")


def read_text(path: Path, errors: str = "strict") -> str:
    """A text file's content; FileProblem when it is missing, a folder, unreadable or not UTF-8 (``errors``)."""
    if not path.is_file():
        raise FileProblem(path, "is a folder, not a file" if path.is_dir() else "does not exist")
    try:
        return path.read_bytes().decode("utf-8", errors)
    except OSError as e:
        raise FileProblem(path, f"cannot be read ({describe(e)})") from e
    except UnicodeDecodeError as e:
        raise FileProblem(path, f"is not text (not UTF-8 at byte {e.start})") from e


def read_yaml(path: Path) -> Any:
    """A YAML file's content as plain values; FileProblem when it is not text or not YAML."""
    try:
        return yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        raise FileProblem(path, f"is not valid YAML ({describe(e)})") from e


def read_json(path: Path) -> Any:
    """A JSON file's content; FileProblem when it is not text or not JSON."""
    try:
        return json.loads(read_text(path))
    except ValueError as e:  # JSONDecodeError, and numbers too long to convert
        raise FileProblem(path, f"is not valid JSON ({describe(e)})") from e


def kind_of(value: Any) -> str:
    """What a parsed value is, for messages: ``a list``, ``the string 'abc'``, ``nothing (an empty file)``."""
    if value is None:
        return "nothing (an empty file)"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, (bool, int, float)):
        return f"the number {value!r}"
    return {list: "a list", dict: "a mapping"}.get(type(value), f"a {type(value).__name__}")


def check_metrics(metrics: Any, path: Path) -> dict[str, Any]:
    """metrics.json's content must be a JSON object whose figures are finite numbers (or null)."""
    if not isinstance(metrics, dict):
        raise FileProblem(path, f"holds {kind_of(metrics)}, not a JSON object of a run's figures")
    for key, hint in METRIC_NUMBERS.items():
        value = metrics.get(key)
        if value is not None and not (finite(value) and fits(value, hint)):
            what = "an integer" if hint is int else "a finite number"
            raise FileProblem(path, f"holds {key}={value!r}: it must be {what} or null")
    return metrics


def load_metrics(path: Path, key: str) -> dict[str, Any]:
    """A run's metrics.json (``key``: the setting that named the run, for the message); ConfigError naming it."""
    try:
        return check_metrics(read_json(path), path)
    except FileProblem as e:
        raise ConfigError(
            f"{key} is not allowed: its metrics.json cannot be read: {e}. Move the file aside to use the run without it"
        ) from e


def load_run_config(config_file: Path, key: str) -> DictConfig:
    """A training run's ``.hydra/config.yaml``, with a model (its arch) and typed data settings; otherwise a
    ConfigError naming the file and ``key`` (``run_dir='...'``, the setting that named the run)."""
    try:
        shape = read_yaml(config_file)
        if not isinstance(shape, dict):
            raise ConfigError(f"it holds {kind_of(shape)}, not a mapping of settings")
        config = OmegaConf.create(read_text(config_file))  # OmegaConf's YAML: its floats, its interpolations
        arch, data = OmegaConf.select(config, "model.arch"), config.get("data")
        if not isinstance(arch, str) or not arch:
            raise ConfigError("model.arch is missing or not a name (model must be a group of settings with its arch)")
        if not isinstance(data, DictConfig) or not isinstance(data.get("_target_"), str):
            raise ConfigError("data._target_ is missing (data must be the group that builds the data module)")
        typed(data, DataSettings, "data", open_keys=True)  # a data setting of the wrong type or out of its range
        return config
    except FileProblem as e:
        problem = e.problem
    except ConfigError as e:
        problem = str(e)
    except Exception as e:  # OmegaConf's YAML errors, interpolations that do not resolve
        problem = describe(e)
    raise ConfigError(f"{key} is not allowed: {config_file} cannot be read as a training run's config ({problem})")


def load_image(path: Path, key: str = "images") -> Image.Image:
    """An image file, decoded; ConfigError naming the file when it is not an image or too large to decode safely."""
    shown = f"{key}: {str(path)!r} is not allowed"
    try:
        with Image.open(path) as image:  # reads the header only (Pillow refuses an image of no pixels)
            if image.width * image.height <= MAX_PIXELS:
                image.load()
                return image
    except Image.DecompressionBombError as e:  # Pillow's own guard, for images past twice its limit
        raise ConfigError(f"{shown}: too large to decode safely ({describe(e)})") from e
    except Exception as e:  # Pillow's decoders raise many kinds (OSError, SyntaxError, struct.error, ...) on bad bytes
        raise ConfigError(f"{shown}: not a readable image ({describe(e)})") from e
    raise ConfigError(
        f"{shown}: {image.width}x{image.height} pixels is more than {MAX_PIXELS:,}; scale it down first "
        "(a digit needs only a few hundred pixels across)"
    )


def read_csv_header(path: Path) -> str | None:
    """The first line of a file (without its line end), or None when it has none that is text."""
    try:
        with open(path, "rb") as f:
            return f.readline(4096).decode("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return None


@dataclasses.dataclass
class JobFiles:
    """What a sweep job's folder holds, read and checked."""

    overrides: list[str]
    hydra: dict[str, Any]  # .hydra/hydra.yaml's ``hydra`` node ({} when the file is not there)
    metrics: dict[str, Any] | None  # None: no metrics.json (the job failed or is running)
    error: str | None  # error.txt's text, if the job left one


class JobFileError(UserError):
    """A file of a sweep job that cannot be read: names it (within the job's folder) and what is wrong."""


def load_job(job_dir: Path) -> JobFiles:
    """A sweep job's ``.hydra/overrides.yaml``, ``.hydra/hydra.yaml``, ``metrics.json`` and ``error.txt``, checked;
    JobFileError (``<name> cannot be read: the file <why> (<path>)``) for the first file that is wrong."""
    overrides_file, hydra_file = job_dir / ".hydra" / "overrides.yaml", job_dir / ".hydra" / "hydra.yaml"
    metrics_file, error_file = job_dir / "metrics.json", job_dir / "error.txt"
    try:
        overrides = read_yaml(overrides_file) or []
        if not isinstance(overrides, list) or not all(isinstance(o, (str, int, float, bool)) for o in overrides):
            raise FileProblem(overrides_file, f"holds {kind_of(overrides)}, not a list of overrides")
        saved = read_yaml(hydra_file) if hydra_file.exists() else {"hydra": {}}
        hydra = saved.get("hydra") if isinstance(saved, dict) else None
        if not isinstance(hydra, dict):
            raise FileProblem(hydra_file, f"holds {kind_of(saved)}, not Hydra's saved config (a mapping with hydra:)")
        job = hydra.get("job")
        num = job.get("num") if isinstance(job, dict) else None
        if not fits(num, int | None):
            raise FileProblem(hydra_file, f"holds hydra.job.num={num!r}, not a job number")
        metrics = check_metrics(read_json(metrics_file), metrics_file) if metrics_file.exists() else None
        error = read_text(error_file, errors="replace") if error_file.is_file() else None  # any bytes, as text
    except FileProblem as e:
        raise JobFileError(f"{e.path.name} cannot be read: the file {e.problem} ({e.path})") from e
    return JobFiles([str(o) for o in overrides], hydra, metrics, error)
