"""Reading back the files a run, a sweep or a user leaves: one function per kind of file.

Each turns every way its file can be wrong (missing, empty, binary, truncated, of another type, out of range)
into a UserError that names the file and what is wrong, so that a command ends with one ``Error:`` line and
never with a traceback from a parser. Checkpoints are read by ``mnist_lit.checkpoints.load_checkpoint``
(what they must hold is the module's own fact).
"""

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
# metrics.json's figures that readers use as numbers: (key, integer?); each may be null (not measured)
METRIC_NUMBERS = (
    ("val/acc", False), ("val/loss", False), ("test/acc", False), ("test/loss", False), ("fit_seconds", False),
    ("epochs", True), ("steps", True), ("parameters", True), ("threads", True), ("best_epoch", True),
    ("pruned_epoch", True),
)  # fmt: skip


class FileProblem(UserError):
    """What is wrong with one file; the callers put it into the sentence that names their key."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path} {problem}")


def read_text(path: Path) -> str:
    """A text file's content; FileProblem when it is missing, a folder, unreadable or not UTF-8 text."""
    if path.is_dir():
        raise FileProblem(path, "is a folder, not a file")
    if not path.is_file():
        raise FileProblem(path, "does not exist")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FileProblem(path, f"cannot be read ({describe(e)})") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileProblem(path, f"is not text (not UTF-8 at byte {e.start})") from e


def read_yaml(path: Path) -> Any:
    """A YAML file's content as plain values; FileProblem when it is not text or not YAML."""
    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise FileProblem(path, f"is not valid YAML ({describe(e)})") from e


def read_json(path: Path) -> Any:
    """A JSON file's content; FileProblem when it is not text or not JSON."""
    text = read_text(path)
    try:
        return json.loads(text)
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
    for key, integer in METRIC_NUMBERS:
        value = metrics.get(key)
        if value is None:
            continue
        if not finite(value) or (integer and not fits(value, int)):
            what = "an integer" if integer else "a finite number"
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


def run_config_problem(config: Any) -> str | None:
    """What a run's saved config lacks for evaluation (None: nothing): the network's name and typed data settings
    (a ConfigError naming data.<key> for a data setting of the wrong type or out of its range)."""
    if not isinstance(config, DictConfig):
        return "it holds no mapping of settings"
    arch, data = OmegaConf.select(config, "model.arch"), config.get("data")
    if not isinstance(arch, str) or not arch:
        return "model.arch is missing or not a name (model must be a group of settings with its arch)"
    if not isinstance(data, DictConfig) or not isinstance(data.get("_target_"), str):
        return "data._target_ is missing (data must be the group of settings that builds the data module)"
    typed(data, DataSettings, "data", open_keys=True)
    return None


def load_run_config(config_file: Path, key: str) -> DictConfig:
    """A training run's ``.hydra/config.yaml``: a mapping with a model (its arch) and typed data settings.

    ``key`` (``run_dir='...'``) is the setting that named the run. ConfigError naming the file otherwise.
    """
    try:
        shape = read_yaml(config_file)
        if isinstance(shape, dict):
            config = OmegaConf.create(read_text(config_file))  # OmegaConf's YAML: its floats, its interpolations
            problem = run_config_problem(config)
        else:
            problem = f"it holds {kind_of(shape)}, not a mapping of settings"
    except FileProblem as e:
        problem = e.problem
    except ConfigError as e:  # a data setting of the wrong type or out of its range
        problem = str(e)
    except Exception as e:  # OmegaConf's YAML errors, interpolations that do not resolve
        problem = describe(e)
    if problem:
        raise ConfigError(f"{key} is not allowed: {config_file} cannot be read as a training run's config ({problem})")
    return config


def load_image(path: Path, key: str = "images") -> Image.Image:
    """An image file, decoded; ConfigError naming the file when it is not an image or too large to decode safely."""
    shown = f"{key}: {str(path)!r} is not allowed"
    try:
        with Image.open(path) as image:  # reads the header only
            if image.width * image.height > MAX_PIXELS:
                raise ConfigError(
                    f"{shown}: {image.width}x{image.height} pixels is more than {MAX_PIXELS:,}; scale it down first "
                    "(a digit needs only a few hundred pixels across)"
                )
            image.load()
            if image.width < 1 or image.height < 1:
                raise ConfigError(f"{shown}: it has no pixels ({image.width}x{image.height})")
            return image
    except Image.DecompressionBombError as e:  # Pillow's own guard, for images past twice its limit
        raise ConfigError(f"{shown}: too large to decode safely ({describe(e)})") from e
    except ConfigError:
        raise
    except Exception as e:  # Pillow's decoders raise many kinds (OSError, SyntaxError, struct.error, ...) on bad bytes
        raise ConfigError(f"{shown}: not a readable image ({describe(e)})") from e


def read_csv_header(path: Path) -> str | None:
    """The first line of a file (without its line end), or None when it has none that is text."""
    try:
        with open(path, "rb") as f:
            first = f.readline(4096)
        return first.decode("utf-8").rstrip("\r\n")
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
    """A sweep job's ``.hydra/overrides.yaml``, ``.hydra/hydra.yaml``, ``metrics.json`` and ``error.txt``, checked.

    JobFileError (``<name> cannot be read: <why> (<path>)``) for the first file that is wrong.
    """
    name = "overrides.yaml"
    try:
        path = job_dir / ".hydra" / "overrides.yaml"
        overrides = read_yaml(path) or []
        if not isinstance(overrides, list) or not all(isinstance(o, (str, int, float, bool)) for o in overrides):
            raise FileProblem(path, f"holds {kind_of(overrides)}, not a list of overrides")
        name = "hydra.yaml"
        path = job_dir / ".hydra" / "hydra.yaml"
        hydra: Any = {}
        if path.exists():
            saved = read_yaml(path)
            hydra = saved.get("hydra") if isinstance(saved, dict) else None
            if not isinstance(hydra, dict):
                raise FileProblem(path, f"holds {kind_of(saved)}, not Hydra's saved config (a mapping with hydra:)")
            job = hydra.get("job")
            num = job.get("num") if isinstance(job, dict) else None
            if not fits(num, int | None):
                raise FileProblem(path, f"holds hydra.job.num={num!r}, not a job number")
        name = "metrics.json"
        path = job_dir / "metrics.json"
        metrics = check_metrics(read_json(path), path) if path.exists() else None
        name = "error.txt"
        path = job_dir / "error.txt"
        # the callback's own record of an exception: shown as text whatever bytes it holds
        error = path.read_bytes().decode("utf-8", errors="replace") if path.is_file() else None
    except FileProblem as e:
        raise JobFileError(f"{name} cannot be read: the file {e.problem} ({e.path})") from e
    except OSError as e:
        raise JobFileError(f"{name} cannot be read: {describe(e)} ({job_dir / name})") from e
    return JobFiles([str(o) for o in overrides], hydra, metrics, error)
