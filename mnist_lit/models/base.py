"""What every network shares: the settings that are not the layers', building one from its config, its size."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mnist_lit.config.schema import setting, shape_keys, typed

IMAGE_SIZE = 28  # the input a network is built for when no data module says otherwise: MNIST's 28x28 grayscale
DEFAULT_INPUT = (1, IMAGE_SIZE, IMAGE_SIZE)  # (channels, height, width)
# Checkpoints name their network by ``_target_``; these name it by the architecture alone.
ARCH_TARGETS = {"mlp": "mnist_lit.models.mlp.MLP", "cnn": "mnist_lit.models.cnn.CNN"}


@dataclasses.dataclass
class NetworkConfig:
    """The settings of every network that are not its layers' (a network's own dataclass adds those)."""

    _target_: str = ""
    arch: str = ""  # its short name: the conf/model/<arch>.yaml that builds it
    name: str = ""  # what run names start with
    compile: bool = False  # torch.compile the network (in place: the checkpoint's parameter names stay)
    # The training loss's label smoothing (torch's cross_entropy): the target is 1 - s on the label and s/classes
    # spread over all classes. Validation and test losses stay plain cross-entropy, comparable between runs.
    label_smoothing: float = setting(0.0, low=0, high=1, high_open=True)
    # The outputs of a network built without a data module; DigitClassifier builds it with its data's class count.
    num_classes: int = setting(10, low=2, shape=True)


def network_class(model: Mapping[str, Any]) -> type[nn.Module]:
    """The class that a ``model`` config names by ``_target_`` (or, in a checkpoint, by ``arch``)."""
    target = str(model.get("_target_") or ARCH_TARGETS.get(str(model.get("arch")), ""))
    module_name, _, class_name = target.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name) if module_name else None
    if not isinstance(cls, type) or not dataclasses.is_dataclass(getattr(cls, "Config", None)):
        raise TypeError(f"{target} is not a network of this project: it has no Config dataclass")
    return cls


def network_config(model: Mapping[str, Any]) -> NetworkConfig:
    """``model`` checked against its network's dataclass (types, ranges, conditions between keys)."""
    return typed(model, network_class(model).Config, "model")


def network_options(config: NetworkConfig) -> dict[str, Any]:
    """The keyword arguments that build the network: its own settings and the number of classes."""
    shared = {f.name for f in dataclasses.fields(NetworkConfig)} - {"num_classes"}
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in shared}


def build_network(
    model: Mapping[str, Any], input_shape: tuple[int, int, int] = DEFAULT_INPUT, num_classes: int | None = None
) -> nn.Module:
    """Build the network a ``model`` config describes (its ``_target_`` and that network's settings) for images
    of ``input_shape`` (channels, height, width) and ``num_classes`` outputs (default: ``model.num_classes``)."""
    cls = network_class(model)
    settings = {**model, "_target_": f"{cls.__module__}.{cls.__qualname__}"}
    if num_classes is not None:
        settings["num_classes"] = num_classes
    channels, height, width = input_shape
    if height != width:
        raise ValueError(f"the networks take square images, not {height}x{width}")
    return cls(**network_options(network_config(settings)), channels=channels, image_size=height)


def network_shape(model: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``model`` that decide its weights' shapes, with their values."""
    config = network_config(model)
    return {key: getattr(config, key) for key in shape_keys(type(config))}


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def flops_per_image(network: nn.Module, input_shape: tuple[int, int, int] = DEFAULT_INPUT) -> int:
    """Floating-point operations of one forward pass over one image of ``input_shape`` (channels, height,
    width), as torch's FLOP counter counts them."""
    parameter = next(network.parameters())
    image = torch.zeros(1, *input_shape, dtype=parameter.dtype, device=parameter.device)
    was_training = network.training
    network.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(image)
    network.train(was_training)
    return counter.get_total_flops()
