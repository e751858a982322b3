"""Checkpoints read back: ``load_checkpoint`` checks a file is one of this project's, ``load_classifier`` builds the
network it holds. Every command that reads a checkpoint (evaluate, predict, export, the demo, a resume) uses these."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, get_type_hints

import torch

from mnist_lit.config.schema import fits, type_text
from mnist_lit.errors import ConfigError, describe
from mnist_lit.lit_module import DigitClassifier, checkpoint_spec
from mnist_lit.models.base import network_config, network_shape

# What a checkpoint of this project holds, by type; on a resume, also what Lightning restores besides the weights.
HOLDS: dict[str, Any] = {"state_dict": dict[str, torch.Tensor], "hyper_parameters": dict[str, Any]}
RESUMED: dict[str, Any] = {"optimizer_states": list[Any], "lr_schedulers": list[Any], "loops": dict, "callbacks": dict}


def checkpoint_problem(checkpoint: Any, resume: bool = False) -> str | None:
    """What keeps ``checkpoint`` (as torch.load returned it) from being one of this project's, or None: its parts
    of the declared types, its hyper-parameters the module's arguments for a network and data set of this project."""
    if not isinstance(checkpoint, dict):
        return f"it holds a {type(checkpoint).__name__}, not the mapping Lightning saves"
    if resume and not checkpoint.get("optimizer_states"):
        return "it holds no optimizer state (saved with weights only?), so it cannot be resumed"
    for key, hint in {**HOLDS, **(RESUMED if resume else {})}.items():
        if not fits(checkpoint.get(key), hint):
            return f"its {key} is missing or not {type_text(hint)}"
    for key in ("epoch", "global_step"):
        if not fits(value := checkpoint.get(key, 0), int) or value < 0:
            return f"{key}={value!r} is not a count (an integer >= 0)"
    saved, hints = checkpoint["hyper_parameters"], get_type_hints(DigitClassifier.__init__)
    try:
        inspect.signature(DigitClassifier).bind(**saved)
        for name, value in saved.items():
            if not fits(value, hints[name]):
                return f"hyper_parameters.{name}={value!r} is not {type_text(hints[name])}"
        network_config(saved["model"])
        checkpoint_spec(saved.get("dataset", "mnist"), saved.get("data"))
    except ConfigError as e:
        return f"hyper_parameters: {e}"
    except (ImportError, AttributeError, TypeError, ValueError, KeyError) as e:
        return f"its hyper_parameters build no module of this project ({describe(e)})"
    return None


def load_checkpoint(ckpt_path: str | Path, arch: str | None = None, resume: bool = False) -> dict[str, Any]:
    """The checkpoint at ``ckpt_path`` (``torch.load(weights_only=True)``: no code in it runs), checked: this project's
    (of architecture ``arch`` if given; ``resume``: with what a resume restores), its weights finite."""
    shown, path = f"ckpt_path={str(ckpt_path)!r} is not allowed", Path(ckpt_path).expanduser()
    if not path.is_file():
        what = "it is a folder" if path.is_dir() else "no such file"
        raise ConfigError(f"{shown}: {what}. Give a .ckpt file, e.g. <run directory>/checkpoints/best.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, empty, foreign bytes, pickled code: torch raises many kinds
        raise ConfigError(f"{shown}: it is not a checkpoint that loads with weights_only=True ({describe(e)})") from e
    if problem := checkpoint_problem(checkpoint, resume):
        raise ConfigError(f"{shown}: it is not a checkpoint of this project: {problem}")
    saved = checkpoint["hyper_parameters"]["model"].get("arch")
    if arch is not None and saved != arch:
        raise ConfigError(
            f"{shown}: it holds a model.arch={saved!r} checkpoint, but model.arch={arch!r}: "
            f"add model={saved} (and the same model settings) to resume it"
        )
    broken = next((name for name, t in checkpoint["state_dict"].items() if not t.isfinite().all()), None)
    if broken is not None:
        best = path.with_name("best.ckpt")
        fix = f"use {best}" if path != best else "train again with a lower optimizer.lr"
        raise ConfigError(
            f"{shown}: its weights are not finite ({broken} holds NaN or infinity): the run diverged "
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
