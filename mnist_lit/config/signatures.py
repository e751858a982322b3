"""Every ``_target_`` group of a config checked against the class it names: its keys against the class's
signature, their values against the signature's type hints, then the class itself built once, off to the
side, so that whatever the library refuses (``Trainer(devices=0)``, ``Adam(betas=[0.9])``) is refused
before anything is written.

Lightning, torch and the project's own classes declare their arguments' types; reading them here keeps
one place for each fact: the library says what it takes, the project adds only the ranges it cannot say.
"""

from __future__ import annotations

import collections.abc
import contextlib
import datetime
import inspect
import json
import logging
import os
import types
import typing
import warnings
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any

from hydra.utils import get_class

from mnist_lit.config.schema import kind, shown, text_hint
from mnist_lit.errors import ConfigError, describe

_UNION = (typing.Union, types.UnionType)


def type_text(annotation: Any) -> str:
    """A type hint in words: ``an integer or null``, ``one of 'min', 'max'``, ``a list of 2 numbers``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return "null"
    if origin in _UNION:
        texts = list(dict.fromkeys(type_text(arg) for arg in args if arg is not type(None)))
        return " or ".join(texts + (["null"] if type(None) in args else []))
    if origin is typing.Literal:
        return "one of " + ", ".join(shown(arg) for arg in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} ({', '.join(type_text(arg) for arg in args)})"
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable, set):
        return f"a list of {type_text(args[0])}" if args else "a list"
    if origin in (dict, collections.abc.Mapping):
        return "a mapping"
    if isinstance(annotation, type) and annotation in (bool, int, float, str):
        return kind(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return kind(annotation)
    if annotation is datetime.timedelta:
        return "a duration"
    if isinstance(annotation, type) and issubclass(annotation, os.PathLike):
        return "a path"
    return f"a {getattr(annotation, '__name__', str(annotation))}"


def value_fits(value: Any, annotation: Any) -> bool:
    """Whether a plain config value (resolved) can be what ``annotation`` declares.

    Strict for plain types (no ``"7"`` for 7, no 1 for true); a group with its own ``_target_`` fits any
    class (its own signature is checked on its own); what cannot be told from a value is left to the library.
    """
    if annotation is Any or annotation is inspect.Parameter.empty or isinstance(annotation, (str, typing.ForwardRef)):
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return value is None
    if origin in _UNION:
        return any(value_fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if isinstance(value, Mapping) and "_target_" in value:
        return origin is not None or isinstance(annotation, type) and annotation not in (bool, int, float, str)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, list):
            return False
        if args and args[-1] is Ellipsis:
            return all(value_fits(v, args[0]) for v in value)
        return not args or (len(value) == len(args) and all(value_fits(v, a) for v, a in zip(value, args, strict=True)))
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable, set, collections.abc.MutableSequence):
        return isinstance(value, list) and (not args or all(value_fits(v, args[0]) for v in value))
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        return isinstance(value, Mapping)
    if annotation is datetime.timedelta:
        return False  # a config holds no timedelta; Lightning's max_time also takes a string or a mapping
    if isinstance(annotation, type):
        if issubclass(annotation, os.PathLike):
            return isinstance(value, str)
        if issubclass(annotation, Enum):
            return any(value == member.value for member in annotation)
        if annotation in (collections.abc.Callable,):
            return False
        return isinstance(value, annotation)
    return True  # a TypeVar, a Callable, a generic this check does not know: the library's own check


def signature_hints(cls: type) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """(parameters of ``cls(...)``, their type hints where they can be evaluated, whether it takes ``**kwargs``)."""
    init = cls.__init__ if isinstance(cls, type) else cls
    parameters = dict(inspect.signature(init).parameters)
    parameters.pop("self", None)
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # forward references to names only imported for type checkers: check what can be read
        hints = {n: p.annotation for n, p in parameters.items() if not isinstance(p.annotation, str)}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    named = {n: p for n, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return named, hints, takes_any


def target_class(node: Mapping[str, Any], key: str) -> Any:
    """The class (or function) that a group's ``_target_`` names; ConfigError naming ``key._target_`` if none."""
    target = node.get("_target_")
    try:
        if not isinstance(target, str) or not target:
            raise ValueError("not a dotted name")
        with quietly():  # Hydra logs its own account of a failed import
            return get_class(target) if "." in target else None
    except Exception as e:
        raise ConfigError(
            f"{key}._target_={shown(target)} is not allowed: it must name an importable class ({describe(e)})"
        ) from None


def check_target(node: Mapping[str, Any], key: str, own_keys: tuple[str, ...] = ()) -> Any:
    """``node`` (a plain mapping with ``_target_``) against its class's signature: every key a parameter,
    every value of the declared type; nested ``_target_`` groups likewise. ``own_keys``: keys the project
    reads itself, not passed to the class. Returns the class."""
    cls = target_class(node, key)
    if cls is None:
        raise ConfigError(f"{key}._target_={shown(node.get('_target_'))} is not allowed: give a module.Class name")
    parameters, hints, takes_any = signature_hints(cls)
    target = node["_target_"]
    for name, value in node.items():
        if name.startswith("_") or name in own_keys:
            continue
        if name not in parameters:
            if takes_any:
                continue
            allowed = ", ".join(sorted(parameters)) or "none"
            raise ConfigError(f"{key}.{name} is not a setting of {target}: it takes {allowed}")
        hint = hints.get(name, inspect.Parameter.empty)
        if not value_fits(value, hint):
            more = text_hint(f"{key}.{name}", value, hint)
            raise ConfigError(f"{key}.{name}={shown(value)} is not allowed: {target} takes {type_text(hint)}{more}")
        for child_key, child in nested_targets(value, f"{key}.{name}"):
            check_target(child, child_key)
    return cls


def nested_targets(value: Any, key: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The ``_target_`` groups inside a value (itself, or the items of a list)."""
    if isinstance(value, Mapping) and "_target_" in value:
        yield key, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, Mapping) and "_target_" in item:
                yield f"{key}[{i}]", item


@contextlib.contextmanager
def quietly() -> Iterator[None]:
    """No warnings or notices while a class is built only to see whether it can be: the real build shows them."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


# Settings already built once in this process (a sweep's jobs, run one after another, share most of theirs).
BUILT: set[str] = set()


def built_or_refused(key: str, target: str, build: typing.Callable[[], Any], settings: Any = None) -> Any:
    """``build()``, or a ConfigError naming ``key`` when the class refuses its settings.

    Whatever a library class raises is a refusal of the user's settings; of the project's own classes only
    value and type errors are (anything else there is a bug, and its traceback shows). With ``settings``
    (plain values), settings that built once are not built again, and None is returned for them.
    """
    seen = json.dumps([key, settings], sort_keys=True, default=repr) if settings is not None else None
    if seen in BUILT:
        return None
    try:
        with quietly():
            built = build()
        if seen is not None:
            BUILT.add(seen)
        return built
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
