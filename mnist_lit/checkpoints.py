"""Checkpoints read back: ``load_checkpoint`` checks a file is one of this project's, ``load_classifier`` builds the
network it holds. Every command that reads a checkpoint (evaluate, predict, export, the demo, a resume) uses these."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mnist_lit.config.schema import fits, type_text
from mnist_lit.errors import ConfigError, describe
from mnist_lit.lit_module import DigitClassifier, checkpoint_spec
from mnist_lit.models.base import network_config, network_shape

# What a checkpoint of this project holds (besides Lightning's other keys), by type; on a resume, also what
# Lightning restores besides the weights (a checkpoint saved with weights only has no optimizer state).
HOLDS: dict[str, Any] = {"state_dict": dict[str, Tensor], "hyper_parameters": dict[str, Any]}
RESUMED: dict[str, Any] = {"optimizer_states": list[Any], "lr_schedulers": list[Any], "loops": dict, "callbacks": dict}


def checkpoint_problem(checkpoint: Any, resume: bool = False) -> str | None:
    """What keeps ``checkpoint`` (as torch.load returned it) from being one of this project's, or None: its
    parts of the declared types, its hyper-parameters the arguments of the module (its signature) that build
    a network of this project for a known data set."""
    if not isinstance(checkpoint, Mapping):
        return f"it holds a {type(checkpoint).__name__}, not the mapping Lightning saves"
    for key, hint in {**HOLDS, **(RESUMED if resume else {})}.items():
        if key not in checkpoint and (key in HOLDS or key == "optimizer_states"):
            return f"it has no {key}" + (" (saved with weights only?), so it cannot be resumed" if resume else "")
        if key in checkpoint and not (fits(checkpoint[key], hint) and (checkpoint[key] or key not in HOLDS)):
            return f"its {key} is not {type_text(hint)}" + (" with something in it" if key in HOLDS else "")
    if resume and not checkpoint["optimizer_states"]:
        return "it holds no optimizer state (saved with weights only?), so it cannot be resumed"
    for key in ("epoch", "global_step"):
        value = checkpoint.get(key, 0)
        if not fits(value, int) or value < 0:
            return f"{key}={value!r} is not a count (an integer >= 0)"
    saved = checkpoint["hyper_parameters"]
    arguments = typing.get_type_hints(DigitClassifier.__init__)
    try:
        inspect.signature(DigitClassifier).bind(**saved)
    except TypeError as e:
        return f"its hyper_parameters are not the arguments of this project's module ({e})"
    for key, value in saved.items():
        if not fits(value, arguments[key]):
            return f"hyper_parameters.{key}={value!r} is not {type_text(arguments[key])}"
    try:
        network_config(saved["model"])
        checkpoint_spec(saved.get("dataset", "mnist"), saved.get("data"))
    except ConfigError as e:
        return f"hyper_parameters: {e}"
    except (ImportError, AttributeError, TypeError, ValueError, KeyError) as e:
        return f"hyper_parameters name no network or data set of this project ({describe(e)})"
    return None


def load_checkpoint(ckpt_path: str | Path, arch: str | None = None, resume: bool = False) -> dict[str, Any]:
    """The checkpoint at ``ckpt_path`` (``torch.load(weights_only=True)``: no code in it runs), checked: this project's
    (of architecture ``arch`` if given; ``resume``: with what a resume restores), its weights finite."""
    shown = f"ckpt_path={str(ckpt_path)!r}"
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        raise ConfigError(
            f"{shown} is not allowed: it is a folder. Give a .ckpt file, e.g. <run directory>/checkpoints/best.ckpt"
        )
    if not path.is_file():
        raise ConfigError(f"{shown} is not allowed: no such file. Give a .ckpt file of this project.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, empty, foreign bytes, pickled code: torch raises many kinds
        raise ConfigError(
            f"{shown} is not allowed: it is not a checkpoint of this project that loads with weights_only=True "
            f"({describe(e)})"
        ) from e
    problem = checkpoint_problem(checkpoint, resume)
    if problem:
        raise ConfigError(f"{shown} is not allowed: it is not a checkpoint of this project: {problem}")
    saved = checkpoint["hyper_parameters"]["model"].get("arch")
    if arch is not None and saved != arch:
        raise ConfigError(
            f"{shown} holds a model.arch={saved!r} checkpoint, but model.arch={arch!r}: "
            f"add model={saved} (and the same model settings) to resume it"
        )
    broken = next(
        (n for n, t in checkpoint["state_dict"].items() if t.is_floating_point() and not t.isfinite().all()), None
    )
    if broken is not None:
        fix = (
            f"use {path.with_name('best.ckpt')}"
            if path.name != "best.ckpt"
            else "train again with a lower optimizer.lr"
        )
        raise ConfigError(
            f"{shown} is not allowed: its weights are not finite ({broken} holds NaN or infinity): the run diverged "
            f"before this checkpoint was saved; {fix}"
        )
    return checkpoint


def load_classifier(
    ckpt_path: str | Path, map_location: str | torch.device = "cpu", checkpoint: dict[str, Any] | None = None
) -> DigitClassifier:
    """The classifier a checkpoint of this project holds (``checkpoint``: as ``load_checkpoint`` read it already),
    or a ConfigError naming the file when its weights do not fit the network its settings build."""
    checkpoint = load_checkpoint(ckpt_path) if checkpoint is None else checkpoint
    saved = checkpoint["hyper_parameters"]
    classifier = DigitClassifier(**saved)
    try:
        classifier.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:  # torch's message names every missing, unexpected and misshapen weight, a line each
        problems = " ".join(line.strip() for line in str(e).splitlines()[1:]) or describe(e)
        sizes = ", ".join(f"model.{k}={v}" for k, v in network_shape(saved["model"]).items())
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} is not allowed: its state_dict does not fit "
            f"model.arch={saved['model']['arch']} with {sizes}: {problems}"
        ) from e
    return classifier.to(map_location)
