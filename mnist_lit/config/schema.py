"""Settings declared once, checked once: the project's own keys in dataclasses (type, range, default), the groups
that name a class by ``_target_`` against that class's signature. Both are checked by typeguard against the type
hints of the declaration (``fits``), and said in words by ``type_text``.

Hydra composes conf/ without the types, so that a wrong value on the command line reaches ``typed`` or
``check_target`` here and ends in the project's one-line ``Error:`` (Hydra's own type errors are a block of text).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import math
import types
import typing
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from typeguard import CollectionCheckStrategy, ForwardRefPolicy, TypeCheckError, check_type

from mnist_lit.errors import ConfigError, describe

PLAIN_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


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


def members(hint: Any) -> tuple[Any, ...]:
    """The types a union joins (a type that is no union: itself)."""
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def type_text(hint: Any) -> str:
    """A type in words: ``an integer or null``, ``one of 'min', 'max'``; any other type as Python writes it."""
    args = members(hint)
    options = [repr(v) for a in args if typing.get_origin(a) is typing.Literal for v in typing.get_args(a)]
    said = ["one of " + ", ".join(options)] if options else []
    for a in args:
        if typing.get_origin(a) is not typing.Literal:
            said.append(PLAIN_WORDS.get(a) or (a.__name__ if isinstance(a, type) else str(a).replace("typing.", "")))
    return " or ".join(dict.fromkeys(said))


def fits(value: Any, hint: Any) -> bool:
    """Whether a plain config value can be what ``hint`` declares (typeguard's check; a list for a tuple, as a
    config holds no tuples). A group with its own ``_target_`` fits: its class's signature is checked on its own."""
    items = value if isinstance(value, list) else [value]
    if any(isinstance(item, Mapping) and "_target_" in item for item in items):
        return True
    if isinstance(value, bool) and all(a in (int, float, type(None)) for a in members(hint)):
        return False  # true is no number, though Python counts it as one
    for candidate in [value, tuple(value)] if isinstance(value, list) else [value]:
        try:
            check_type(
                candidate,
                hint,
                forward_ref_policy=ForwardRefPolicy.IGNORE,
                collection_check_strategy=CollectionCheckStrategy.ALL_ITEMS,
            )
            return True
        except TypeCheckError:
            pass
    return False


def refused_type(key: str, value: Any, hint: Any, who: str = "it must be") -> ConfigError:
    """``key=value is not allowed: <who> <the type in words>``, with how to quote a number meant as text."""
    hint_text = ""
    if fits(value, float) and fits(str(value), hint):
        hint_text = f" (for the name {value}, quote it: {key}=\"'{value}'\")"
    return ConfigError(f"{key}={shown(value)} is not allowed: {who} {type_text(hint)}{hint_text}")


def range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = f"{'(' if low_open else '['}{low if low is not None else '-inf'}"
    hi = f"{high if high is not None else 'inf'}{')' if high_open or high is None else ']'}"
    return f"{lo}, {hi}"


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite number: an int or a float, never a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def in_range(value: Any, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if not finite(value):  # NaN and infinity are in no range; null (where allowed) and the rest: checked by type
        return not isinstance(value, float)
    if low is not None and (value <= low if low_open else value < low):
        return False
    return high is None or (value < high if high_open else value <= high)


def shown(value: Any) -> str:
    """A value as the command line writes it: null for None, true and false, strings quoted."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)


def plain(value: Any) -> Any:
    """A config value as plain Python (lists and mappings included), interpolations resolved."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def resolved(cfg: DictConfig, keys: Any = None) -> dict[str, Any]:
    """``cfg`` (its ``keys``; all but Hydra's own settings by default) as plain values, every interpolation
    resolved; ConfigError naming the key whose interpolation fails (an unset environment variable, a missing key)."""
    values: dict[str, Any] = {}
    for key in cfg if keys is None else keys:
        try:
            values[key] = None if key == "hydra" else plain(cfg[key])
        except OmegaConfBaseException as e:
            raise ConfigError(f"{e.full_key or key} cannot be resolved: {describe(e)}") from None
    return values


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


def checked(
    node: Any, cls: Any, key: str, *, skip: tuple[str, ...] = (), open_keys: bool = False, ranges: Any = None
) -> dict[str, Any]:
    """``node``'s settings against what ``cls`` takes (a dataclass declaring them, or a class named by
    ``_target_``): every key a parameter (any key where ``cls`` takes ``**kwargs``, or with ``open_keys``), every
    value of its type (typeguard) and in its range (a declaration's ``setting``, or ``ranges``), a class's nested
    ``_target_`` groups likewise, a declaration's keys without a default given. ``skip``: keys the project reads
    itself. Returns the settings ``cls`` takes, resolved. ConfigError naming ``key.<name>``, the value and what is
    allowed."""
    if not isinstance(node, Mapping | DictConfig):
        raise ConfigError(f"{key}={shown(node)} is not allowed: it must be a group of settings")
    schema = dataclasses.is_dataclass(cls)
    init = cls.__init__ if isinstance(cls, type) else cls
    parameters = {n: p for n, p in inspect.signature(init).parameters.items() if n != "self"}
    named = {n: p for n, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    open_keys = open_keys or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    try:
        hints = typing.get_type_hints(cls if schema else init)
    except Exception:  # forward references to names only imported for type checkers: check what can be read
        hints = {n: p.annotation for n, p in named.items() if not isinstance(p.annotation, str)}
    bounds = {f.name: f.metadata for f in dataclasses.fields(cls)} if schema else {}
    ranges = {**{n: m["range"] for n, m in bounds.items() if "range" in m}, **(ranges or {})}
    owner, who = (key or "this command", "it must be") if schema else (node["_target_"], f"{node['_target_']} takes")
    prefix = f"{key}." if key else ""
    values = resolved(node, [k for k in node if k in named or not open_keys])  # only these are resolved
    for name, value in values.items():
        if name.startswith("_") or name in skip:
            continue
        if name not in named:
            allowed = ", ".join(sorted(n for n in named if not n.startswith("_"))) or "none"
            raise ConfigError(f"{prefix}{name} is not a setting of {owner}: choose from {allowed}")
        if name in hints and not fits(value, hints[name]):
            raise refused_type(f"{prefix}{name}", value, hints[name], who)
        if isinstance(value, str) and len(value) < bounds.get(name, {}).get("min_length", 0):
            raise ConfigError(f"{prefix}{name}={shown(value)} is not allowed: it must not be empty")
        if name in ranges and not in_range(value, *ranges[name]):
            what = f"{type_text(hints[name]) + ' ' if name in hints else ''}in {range_text(*ranges[name])}"
            raise ConfigError(f"{prefix}{name}={shown(value)} is not allowed: it must be {what}")
        children = [] if schema else value if isinstance(value, list) else [value]  # a declaration's: on their own
        for i, child in enumerate(children):
            if isinstance(child, Mapping) and "_target_" in child:
                check_target(child, f"{prefix}{name}" + (f"[{i}]" if isinstance(value, list) else ""))
    for name, p in named.items():
        if schema and name not in values and p.default is p.empty:
            raise ConfigError(f"{prefix}{name} is missing: give {prefix}{name}=<{type_text(hints[name])}>")
    return {n: v for n, v in values.items() if n in named}


def typed(node: Any, schema: type, key: str, *, open_keys: bool = False) -> Any:
    """``node`` checked against the dataclass ``schema`` (``checked``) and built: its ``__post_init__`` checks
    the conditions between keys. ``open_keys``: keys it does not declare pass unchecked (an optimizer's own)."""
    return schema(**checked(node, schema, key, open_keys=open_keys))


def check_target(node: Mapping[str, Any], key: str, skip: tuple[str, ...] = (), ranges: Any = None) -> Any:
    """``node`` (a plain mapping with ``_target_``) against its class's signature (``checked``); returns the
    class. ConfigError naming ``key._target_`` when it names no importable class."""
    target = node.get("_target_")
    try:
        if not isinstance(target, str) or "." not in target:
            raise ValueError("not a module.Class name")
        with quietly():  # Hydra logs its own account of a failed import
            cls = get_class(target)
    except Exception as e:
        raise ConfigError(
            f"{key}._target_={shown(target)} is not allowed: it must name an importable class ({describe(e)})"
        ) from None
    checked(node, cls, key, skip=skip, ranges=ranges)
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
