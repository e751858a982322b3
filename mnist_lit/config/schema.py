"""Settings declared once, checked once: the project's own keys in dataclasses (type, range, default), the groups
that name a class by ``_target_`` against that class's signature. Both use the same two facts about a type: what
value fits it (``fits``) and how to say it (``words``).

Hydra composes conf/ without the types, so that a wrong value on the command line reaches ``typed`` or
``check_target`` here and ends in the project's one-line ``Error:`` (Hydra's own type errors are a block of text).
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import datetime
import inspect
import logging
import math
import os
import types
import typing
import warnings
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from mnist_lit.errors import ConfigError, describe

UNION = (typing.Union, types.UnionType)
SEQUENCES = (list, tuple, set, collections.abc.Sequence, collections.abc.MutableSequence, collections.abc.Iterable)
MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
PLAIN_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


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


def shape_keys(schema: type) -> list[str]:
    """The settings of ``schema`` that decide the weights' shapes."""
    return [f.name for f in dataclasses.fields(schema) if f.metadata.get("shape")]


def words(annotation: Any) -> str:
    """A type in words: ``an integer or null``, ``one of 'min', 'max'``, ``a list of 2 (a number, a number)``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return "null"
    if origin in UNION:
        texts = list(dict.fromkeys(words(arg) for arg in args if arg is not type(None)))
        return " or ".join(texts + (["null"] if type(None) in args else []))
    if origin is typing.Literal:
        return "one of " + ", ".join(shown(arg) for arg in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} ({', '.join(words(arg) for arg in args)})"
    if origin in SEQUENCES or annotation in (list, tuple):
        return "a list"
    if origin in MAPPINGS or annotation is dict:
        return "a mapping"
    if annotation in PLAIN_WORDS:
        return PLAIN_WORDS[annotation]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(str(m.value) for m in annotation)
    if annotation is datetime.timedelta:
        return "a duration"
    if isinstance(annotation, type) and issubclass(annotation, os.PathLike):
        return "a path"
    return f"a {getattr(annotation, '__name__', str(annotation))}"


def fits(value: Any, annotation: Any) -> bool:
    """Whether a plain config value can be what ``annotation`` declares: strict for plain types (no ``"7"`` for
    7, no 1 for true); a group with its own ``_target_`` fits any class (its own signature is checked on its own);
    what cannot be told from a value is left to the library."""
    if annotation is Any or annotation is inspect.Parameter.empty or isinstance(annotation, (str, typing.ForwardRef)):
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return value is None
    if origin in UNION:
        return any(fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if isinstance(value, Mapping) and "_target_" in value:
        return origin is not None or isinstance(annotation, type) and annotation not in PLAIN_WORDS
    if annotation in PLAIN_WORDS:
        number = isinstance(value, (int, float) if annotation is float else annotation)
        return number and (annotation is bool or not isinstance(value, bool))
    if origin is tuple and args and args[-1] is not Ellipsis:
        return isinstance(value, list) and len(value) == len(args) and all(map(fits, value, args))
    if origin in SEQUENCES or annotation in (list, tuple):
        return isinstance(value, list) and all(fits(v, args[0]) for v in value) if args else isinstance(value, list)
    if origin in MAPPINGS or annotation is dict:
        return isinstance(value, Mapping)
    if annotation is datetime.timedelta:
        return False  # a config holds no timedelta; Lightning's max_time also takes a string or a mapping
    if isinstance(annotation, type):
        if issubclass(annotation, os.PathLike):
            return isinstance(value, str)
        if issubclass(annotation, Enum):
            return any(value == member.value for member in annotation)
        return annotation is not collections.abc.Callable and isinstance(value, annotation)
    return True  # a TypeVar, a Callable, a generic this check does not know: the library's own check


def refused_type(key: str, value: Any, annotation: Any, who: str = "it must be") -> ConfigError:
    """``key=value is not allowed: <who> <the type in words>``, with how to quote a number meant as text."""
    wants_text = annotation is str or str in typing.get_args(annotation)
    hint = ""
    if wants_text and isinstance(value, (int, float)) and not isinstance(value, bool):
        hint = f" (for the name {value}, quote it: {key}=\"'{value}'\")"
    return ConfigError(f"{key}={shown(value)} is not allowed: {who} {words(annotation)}{hint}")


def range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = f"{'(' if low_open else '['}{low if low is not None else '-inf'}"
    hi = f"{high if high is not None else 'inf'}{')' if high_open or high is None else ']'}"
    return f"{lo}, {hi}"


def in_range(value: Any, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return True  # null where the type allows it; the type itself is checked on its own
    if not math.isfinite(value):
        return False
    if low is not None and (value <= low if low_open else value < low):
        return False
    return high is None or (value < high if high_open else value <= high)


def shown(value: Any) -> str:
    """A value as the command line writes it: null for None, strings quoted."""
    return "null" if value is None else repr(value)


def plain(value: Any) -> Any:
    """A config value as plain Python (lists and mappings included), interpolations resolved."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` as plain values, every interpolation resolved (Hydra's own settings left out); ConfigError
    naming the key whose interpolation fails (an unset environment variable, a missing key)."""
    values: dict[str, Any] = {}
    for key in cfg:
        if key == "hydra":
            values[key] = None
            continue
        try:
            values[key] = plain(cfg[key])
        except OmegaConfBaseException as e:
            where = e.full_key or key
            raise ConfigError(f"{where} cannot be resolved: {describe(e)}") from None
    return values


def typed(node: Any, schema: type, key: str, *, open_keys: bool = False) -> Any:
    """``node`` checked against ``schema``: types, unknown keys (OmegaConf's structured config), ranges and the
    schema's own ``__post_init__`` (conditions between keys); returns the schema's instance. Raises ConfigError
    naming ``key.<setting>``, the value and what is allowed. ``open_keys``: keys the schema does not declare are
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
        if name in hints and not fits(value, hints[name]):
            raise refused_type(f"{prefix}{name}", value, hints[name])
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
    except ConfigKeyError as e:
        allowed = ", ".join(name for name in declared if not name.startswith("_"))
        raise ConfigError(
            f"{prefix}{e.key} is not a setting of {key or 'this command'}: choose from {allowed}"
        ) from None
    for name, f in declared.items():
        if OmegaConf.is_missing(merged, name):
            raise ConfigError(f"{prefix}{name} is missing: give {prefix}{name}=<{words(hints[name])}>")
        value = merged[name]
        if isinstance(value, str) and len(value) < f.metadata.get("min_length", 0):
            raise ConfigError(f"{prefix}{name}={shown(value)} is not allowed: it must not be empty")
        bounds = f.metadata.get("range")
        if bounds and not in_range(value, *bounds):
            what = f"{words(hints[name])} in {range_text(*bounds)}"
            raise ConfigError(f"{prefix}{name}={shown(value)} is not allowed: it must be {what}")
    return schema(**OmegaConf.to_container(merged))  # runs the schema's __post_init__: conditions between keys


@contextlib.contextmanager
def quietly() -> Iterator[None]:
    """No warnings or notices while a class is imported or built: its account of a refusal is the ConfigError."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def target_class(node: Mapping[str, Any], key: str) -> Any:
    """The class (or function) that a group's ``_target_`` names; ConfigError naming ``key._target_`` if none."""
    target = node.get("_target_")
    try:
        if not isinstance(target, str) or "." not in target:
            raise ValueError("not a module.Class name")
        with quietly():  # Hydra logs its own account of a failed import
            return get_class(target)
    except Exception as e:
        raise ConfigError(
            f"{key}._target_={shown(target)} is not allowed: it must name an importable class ({describe(e)})"
        ) from None


def check_target(node: Mapping[str, Any], key: str, own_keys: tuple[str, ...] = ()) -> Any:
    """``node`` (a plain mapping with ``_target_``) against its class's signature: every key a parameter, every
    value of the declared type; nested ``_target_`` groups likewise. ``own_keys``: keys the project reads itself,
    not passed to the class. Returns the class."""
    cls = target_class(node, key)
    init = cls.__init__ if isinstance(cls, type) else cls
    parameters = {n: p for n, p in inspect.signature(init).parameters.items() if n != "self"}
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # forward references to names only imported for type checkers: check what can be read
        hints = {n: p.annotation for n, p in parameters.items() if not isinstance(p.annotation, str)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    named = sorted(n for n, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
    for name, value in node.items():
        if name.startswith("_") or name in own_keys:
            continue
        if name not in named:
            if takes_any:
                continue
            raise ConfigError(
                f"{key}.{name} is not a setting of {node['_target_']}: it takes {', '.join(named) or 'none'}"
            )
        hint = hints.get(name, inspect.Parameter.empty)
        if not fits(value, hint):
            raise refused_type(f"{key}.{name}", value, hint, f"{node['_target_']} takes")
        items = value if isinstance(value, list) else [value]
        for i, child in enumerate(items):
            if isinstance(child, Mapping) and "_target_" in child:
                check_target(child, f"{key}.{name}" + (f"[{i}]" if isinstance(value, list) else ""))
    return cls


def built_or_refused(key: str, target: str, build: typing.Callable[[], Any]) -> Any:
    """``build()``, or a ConfigError naming ``key`` when the class ``target`` refuses its settings.

    Whatever a library class raises is a refusal of the user's settings; of the project's own classes only value
    and type errors are (anything else there is a bug, and its traceback shows).
    """
    try:
        return build()
    except ConfigError:
        raise
    except Exception as e:
        cause = e
        while cause.__cause__ is not None:  # Hydra's InstantiationException wraps what the class raised
            cause = cause.__cause__
        if target.startswith("mnist_lit.") and not isinstance(cause, (ValueError, TypeError)):
            raise
        raise ConfigError(
            f"{key} cannot be built with these settings: {target} refuses them ({describe(cause)})"
        ) from None
