"""Typed configs: every setting declared once in a dataclass, with its type, its allowed range and, for networks, its
default; OmegaConf checks the types, one function the ranges.

Hydra composes conf/ without the types, so that a wrong value on the command line reaches ``typed``
here and ends in the project's one-line ``Error:`` (Hydra's own type errors are a block of text).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from mnist_lit.errors import ConfigError, describe


def setting(
    default: Any = dataclasses.MISSING,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    shape: bool = False,
    min_length: int = 0,
) -> Any:
    """A dataclass field with an allowed range (``low``/``high``; open ends excluded); ``shape``: decides the
    weights' shapes, so a checkpoint resumes only with the same value; ``min_length``: of a string (1: not empty)."""
    metadata = {"range": (low, high, low_open, high_open), "shape": shape, "min_length": min_length}
    return dataclasses.field(default=default, metadata=metadata)


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


def shape_keys(schema: type) -> list[str]:
    """The settings of ``schema`` that decide the weights' shapes."""
    return [f.name for f in dataclasses.fields(schema) if f.metadata.get("shape")]


def kind(annotation: Any) -> str:
    """What a value of this type is, in words: ``an integer``, ``true or false``, ``one of a, b`` (or null)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return f"{kind(inner[0])} or null" if len(inner) == 1 else "a value or null"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(str(m.value) for m in annotation)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if typing.get_origin(annotation) in (list, tuple):
        return "a list"
    return names.get(annotation, f"a {getattr(annotation, '__name__', annotation)}")


def plain_type_ok(value: Any, annotation: Any) -> bool:
    """Stricter than OmegaConf for plain types: no 1 for true, no "7" for 7, no true for 1."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return True
        annotation = next(a for a in args if a is not type(None))
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return True  # lists, mappings, enums: OmegaConf's check


def range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = f"{'(' if low_open else '['}{low if low is not None else '-inf'}"
    hi = f"{high if high is not None else 'inf'}{')' if high_open or high is None else ']'}"
    return f"{lo}, {hi}"


def in_range(value: Any, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return True  # null where the type allows it; the type itself is OmegaConf's check
    if not math.isfinite(value):
        return False
    if low is not None and (value <= low if low_open else value < low):
        return False
    return high is None or (value < high if high_open else value <= high)


def text_hint(key: str, value: Any, annotation: Any) -> str:
    """For a number given where text is wanted (a folder named 2024): how to give it as text."""
    wants_text = annotation is str or str in typing.get_args(annotation)
    if wants_text and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f" (for the name {value}, quote it: {key}=\"'{value}'\")"
    return ""


def shown(value: Any) -> str:
    """A value as the command line writes it: null for None, strings quoted."""
    return "null" if value is None else repr(value)


def plain(value: Any) -> Any:
    """A config value as plain Python (lists and mappings included), interpolations resolved."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def typed(node: Any, schema: type, key: str, *, open_keys: bool = False) -> Any:
    """``node`` checked against ``schema``: types (OmegaConf), unknown keys, ranges and the schema's own
    ``__post_init__`` (conditions between keys); returns the schema's instance. Raises ConfigError naming
    ``key.<setting>``, the value and what is allowed. ``open_keys``: keys the schema does not declare are
    passed through unchecked (an optimizer's own arguments)."""
    if not isinstance(node, Mapping | DictConfig):
        raise ConfigError(f"{key}={node!r} is not allowed: it must be a group of settings ({schema.__name__})")
    declared = {f.name: f for f in dataclasses.fields(schema)}
    try:
        values = {k: plain(node[k]) for k in node if not open_keys or k in declared}  # only these are resolved
    except OmegaConfBaseException as e:
        raise ConfigError(f"{e.full_key or key} cannot be resolved: {describe(e)}") from None
    hints = typing.get_type_hints(schema)
    prefix = f"{key}." if key else ""
    for name, value in values.items():
        if name in hints and not plain_type_ok(value, hints[name]):
            hint = text_hint(f"{prefix}{name}", value, hints[name])
            raise ConfigError(f"{prefix}{name}={shown(value)} is not allowed: it must be {kind(hints[name])}{hint}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
    except ConfigKeyError as e:
        allowed = ", ".join(name for name in declared if not name.startswith("_"))
        raise ConfigError(
            f"{prefix}{e.key} is not a setting of {key or 'this command'}: choose from {allowed}"
        ) from None
    except OmegaConfBaseException as e:
        name = str(e.full_key).split(".")[-1] if e.full_key else ""
        allowed = kind(hints[name]) if name in hints else "another value"
        raise ConfigError(f"{prefix}{name}={shown(e.value)} is not allowed: it must be {allowed}") from None
    for name, f in declared.items():
        value = merged[name] if not OmegaConf.is_missing(merged, name) else None
        bounds = f.metadata.get("range")
        if value is None and OmegaConf.is_missing(merged, name):
            raise ConfigError(f"{prefix}{name} is missing: give {prefix}{name}=<{kind(hints[name])}>")
        if isinstance(value, str) and len(value) < f.metadata.get("min_length", 0):
            raise ConfigError(f"{prefix}{name}={shown(value)} is not allowed: it must not be empty")
        if bounds and not in_range(value, *bounds):
            what = kind(hints[name])
            raise ConfigError(
                f"{prefix}{name}={shown(value)} is not allowed: it must be {what} in {range_text(*bounds)}"
            )
    return schema(**OmegaConf.to_container(merged))  # runs the schema's __post_init__: conditions between keys
