"""The two networks of the presentation, with options for stronger variants, as plain ``nn.Module``s (logits)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mnist_lit.data.datamodule import NUM_CLASSES
from mnist_lit.errors import ConfigError

IMAGE_SIZE = 28


class MLP(nn.Sequential):
    """784 -> hidden (ReLU) [-> hidden (ReLU) ...] -> 10; the defaults give the presentation's network.

    ``dropout`` > 0 adds dropout after each hidden layer; with the defaults the layers (and so
    the parameter names of older checkpoints) are exactly the presentation's.
    """

    def __init__(self, hidden: int = 128, layers: int = 1, dropout: float = 0.0) -> None:
        modules: list[nn.Module] = [nn.Flatten()]
        width = IMAGE_SIZE * IMAGE_SIZE
        for _ in range(layers):
            modules += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout:
                modules.append(nn.Dropout(dropout))
            width = hidden
        super().__init__(*modules, nn.Linear(width, NUM_CLASSES))


def feature_map_sizes(
    blocks: int, kernel_size: int, image_size: int = IMAGE_SIZE, convs_per_block: int = 1
) -> list[int]:
    """Side length after each conv block (``convs_per_block`` valid convolutions, then 2x2 max-pooling).

    Raises ConfigError naming the combination when a block would get a map smaller than it needs.
    """
    sizes, side = [], image_size
    needed = convs_per_block * (kernel_size - 1) + 2
    for block in range(1, blocks + 1):
        if side < needed:
            convs = f"{convs_per_block} {kernel_size}x{kernel_size} convolution(s)"
            raise ConfigError(
                f"model.kernel_size={kernel_size} with model.blocks={blocks} and model.convs_per_block="
                f"{convs_per_block} cannot work on {image_size}x{image_size} input: conv block {block} receives a "
                f"{side}x{side} feature map, and {convs} followed by 2x2 pooling need at least {needed}x{needed}. "
                "Use a smaller model.kernel_size, fewer model.blocks or fewer model.convs_per_block."
            )
        side = (side - convs_per_block * (kernel_size - 1)) // 2
        sizes.append(side)
    return sizes


class CNN(nn.Module):
    """Conv blocks (kxk convolutions, ReLU, 2x2 max-pooling), flatten, dense + ReLU, 10 logits.

    Block ``i`` has ``filters * 2**i`` filters: the default 32 and 2 blocks give the presentation's
    32 and 64. Options for stronger networks, all off by default (then the layers, and so the
    parameter names of older checkpoints, are exactly the presentation's): ``convs_per_block``
    convolutions per block, ``batch_norm`` after each convolution (which then has no bias) and
    after the dense layer, ``block_dropout`` after each block's pooling, and ``global_pool``
    (average each final feature map to one value instead of flattening the maps).
    """

    def __init__(
        self,
        filters: int = 32,
        blocks: int = 2,
        kernel_size: int = 3,
        dense: int = 128,
        dropout: float = 0.0,
        memory_format: torch.memory_format = torch.contiguous_format,
        convs_per_block: int = 1,
        batch_norm: bool = False,
        block_dropout: float = 0.0,
        global_pool: bool = False,
    ) -> None:
        super().__init__()
        side = feature_map_sizes(blocks, kernel_size, convs_per_block=convs_per_block)[-1] if blocks else IMAGE_SIZE
        layers: list[nn.Module] = []
        channels = 1
        for block in range(blocks):
            width = filters * 2**block
            for _ in range(convs_per_block):
                layers.append(nn.Conv2d(channels, width, kernel_size, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU())
                channels = width
            layers.append(nn.MaxPool2d(2))
            if block_dropout:
                layers.append(nn.Dropout(block_dropout))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if global_pool else [nn.Flatten()]
        flat = channels if global_pool else channels * side * side
        head.append(nn.Linear(flat, dense, bias=not batch_norm))
        if batch_norm:
            head.append(nn.BatchNorm1d(dense))
        head += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(dense, NUM_CLASSES)]
        self.classifier = nn.Sequential(*head)
        # torch.channels_last lets oneDNN / cuDNN pick faster convolution kernels; the weights are the same.
        self.memory_format = memory_format
        self.to(memory_format=self.memory_format)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x.contiguous(memory_format=self.memory_format)))


ARCHITECTURES: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "mlp": (MLP, ("hidden", "layers", "dropout")),
    "cnn": (
        CNN,
        (
            "filters",
            "blocks",
            "kernel_size",
            "dense",
            "dropout",
            "convs_per_block",
            "batch_norm",
            "block_dropout",
            "global_pool",
        ),
    ),
}


def build_network(model: Mapping[str, Any]) -> nn.Module:
    """Build the network a ``model`` config describes (``arch`` plus that architecture's keys)."""
    arch = model.get("arch")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"model.arch={arch!r} is not one of: {', '.join(ARCHITECTURES)}")
    cls, keys = ARCHITECTURES[arch]
    options = {key: model[key] for key in keys if key in model}
    if model.get("channels_last"):  # the CNN's memory layout (model.channels_last)
        options["memory_format"] = torch.channels_last
    return cls(**options)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def flops_per_image(network: nn.Module) -> int:
    """Floating-point operations of one forward pass over one image, as torch's FLOP counter counts them."""
    parameter = next(network.parameters())
    image = torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE, dtype=parameter.dtype, device=parameter.device)
    was_training = network.training
    network.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(image)
    network.train(was_training)
    return counter.get_total_flops()
