"""Checkpoints read back: ``load_checkpoint`` checks a file is one of this project's, ``load_classifier`` builds the
network it holds. Every command that reads a checkpoint (evaluate, predict, export, the demo, a resume) uses these."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mnist_lit.data.dataset import ImageSpec, load_dataset
from mnist_lit.errors import ConfigError, describe
from mnist_lit.lit_module import DigitClassifier
from mnist_lit.models.base import network_config, network_shape


def checkpoint_problem(checkpoint: Any, resume: bool = False) -> str | None:
    """What keeps ``checkpoint`` (as torch.load returned it) from being one of this project's, or None."""
    if not isinstance(checkpoint, Mapping):
        return f"it holds a {type(checkpoint).__name__}, not the mapping Lightning saves"
    weights = checkpoint.get("state_dict")
    if not isinstance(weights, Mapping) or not weights:
        return "it has no state_dict (the network's weights)"
    for name, value in weights.items():
        if not isinstance(name, str) or not isinstance(value, Tensor):
            return f"state_dict[{name!r}] is a {type(value).__name__}, not a tensor"
    saved = checkpoint.get("hyper_parameters")
    if not isinstance(saved, Mapping):
        return "it has no hyper_parameters (the settings the network was built with)"
    arguments = list(inspect.signature(DigitClassifier.__init__).parameters.values())[1:]  # what it may hold
    required = {a.name for a in arguments if a.default is inspect.Parameter.empty}
    unknown = sorted(set(map(str, saved)) - {a.name for a in arguments})
    missing = sorted(required - set(saved))
    if unknown or missing:
        what = [f"hyper_parameters.{k} is not a setting of this project's module" for k in unknown]
        return "; ".join(what + [f"hyper_parameters.{k} is missing" for k in missing])
    model = saved["model"]
    if not isinstance(model, Mapping):
        return f"hyper_parameters.model is a {type(model).__name__}, not a group of settings"
    try:
        network_config(model)
    except ConfigError as e:
        return f"hyper_parameters: {e}"
    except (ImportError, AttributeError, TypeError, ValueError) as e:
        return f"hyper_parameters.model names no network of this project ({describe(e)})"
    if not isinstance(model.get("arch"), str) or not model["arch"]:
        return "hyper_parameters.model.arch is missing (the name of the network)"
    if not isinstance(saved["optimizer"], Mapping):
        return f"hyper_parameters.optimizer={saved['optimizer']!r} is not a group of settings"
    if saved.get("scheduler") is not None and not isinstance(saved["scheduler"], Mapping):
        return f"hyper_parameters.scheduler={saved['scheduler']!r} is neither null nor a group of settings"
    dataset, data = saved.get("dataset", "mnist"), saved.get("data")
    if data is not None and not isinstance(data, Mapping):
        return f"hyper_parameters.data is a {type(data).__name__}, not a group of settings"
    if dataset is not None or data is None:
        try:
            known = isinstance(dataset, str) and bool(load_dataset(dataset))
        except ConfigError:
            known = False
        if not known:
            return f"hyper_parameters.dataset={dataset!r} names no data set of this project"
    if data is not None:
        try:
            ImageSpec.from_dict(data)
        except ValueError as e:
            return f"hyper_parameters.data: {e}"
    for key in ("epoch", "global_step"):
        value = checkpoint.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{key}={value!r} is not a count (an integer >= 0)"
    if resume:
        # what Lightning restores on a resume besides the weights
        if not isinstance(checkpoint.get("optimizer_states"), list) or not checkpoint["optimizer_states"]:
            return "it holds no optimizer state (saved with weights only?), so it cannot be resumed"
        for key, kind in (("lr_schedulers", list), ("loops", Mapping), ("callbacks", Mapping)):
            if key in checkpoint and not isinstance(checkpoint[key], kind):
                return f"its {key} is a {type(checkpoint[key]).__name__}, so it cannot be resumed"
    return None


def load_checkpoint(
    ckpt_path: str | os.PathLike, arch: str | None = None, key: str = "ckpt_path", resume: bool = False
) -> dict[str, Any]:
    """The checkpoint at ``ckpt_path`` (``torch.load(weights_only=True)``: no code in it runs), checked: this
    project's (of architecture ``arch`` if given; ``resume``: with what a resume restores), its weights finite.
    ConfigError naming ``key`` and the file otherwise."""
    shown = f"{key}={str(ckpt_path)!r}"
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
    ckpt_path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    checkpoint: dict[str, Any] | None = None,
    key: str = "ckpt_path",
) -> DigitClassifier:
    """The classifier a checkpoint of this project holds (``checkpoint``: as ``load_checkpoint`` read it already).
    ConfigError naming ``key`` and the file when its weights do not fit the network its settings build."""
    if checkpoint is None:
        checkpoint = load_checkpoint(ckpt_path, key=key)
    saved = checkpoint["hyper_parameters"]
    classifier = DigitClassifier(**saved)
    try:
        classifier.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:  # torch's message names every missing, unexpected and misshapen weight, a line each
        problems = " ".join(line.strip() for line in str(e).splitlines()[1:]) or describe(e)
        sizes = ", ".join(f"model.{k}={v}" for k, v in network_shape(saved["model"]).items())
        raise ConfigError(
            f"{key}={str(ckpt_path)!r} is not allowed: its state_dict does not fit "
            f"model.arch={saved['model']['arch']} with {sizes}: {problems}"
        ) from e
    return classifier.to(map_location)
