"""The two networks of the seed presentation, as plain ``nn.Module``s that output logits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mnist_lit.data import NUM_CLASSES
from mnist_lit.errors import ConfigError

IMAGE_SIZE = 28


class MLP(nn.Sequential):
    """784 -> hidden (ReLU) -> 10: the seed's network."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(IMAGE_SIZE * IMAGE_SIZE, hidden),
            nn.ReLU(),
            nn.Linear(hidden, NUM_CLASSES),
        )


def feature_map_sizes(blocks: int, kernel_size: int, image_size: int = IMAGE_SIZE) -> list[int]:
    """Side length after each conv block (valid convolution, then 2x2 max-pooling).

    Raises ConfigError naming the combination when a block would get a map smaller than it needs.
    """
    sizes, side = [], image_size
    for block in range(1, blocks + 1):
        if side < kernel_size + 1:
            raise ConfigError(
                f"model.kernel_size={kernel_size} with model.blocks={blocks} cannot work on "
                f"{image_size}x{image_size} input: conv block {block} receives a {side}x{side} feature map, "
                f"and a {kernel_size}x{kernel_size} convolution followed by 2x2 pooling needs at least "
                f"{kernel_size + 1}x{kernel_size + 1}. Use a smaller model.kernel_size or fewer model.blocks."
            )
        side = (side - kernel_size + 1) // 2
        sizes.append(side)
    return sizes


class CNN(nn.Module):
    """Conv blocks (kxk convolution, ReLU, 2x2 max-pooling), flatten, dense + ReLU, 10 logits.

    Block ``i`` has ``filters * 2**i`` filters: the default 32 and 2 blocks give the seed's 32 and 64.
    """

    def __init__(
        self,
        filters: int = 32,
        blocks: int = 2,
        kernel_size: int = 3,
        dense: int = 128,
        dropout: float = 0.0,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        super().__init__()
        side = feature_map_sizes(blocks, kernel_size)[-1] if blocks else IMAGE_SIZE
        layers: list[nn.Module] = []
        channels = 1
        for block in range(blocks):
            width = filters * 2**block
            layers += [nn.Conv2d(channels, width, kernel_size), nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * side * side, dense),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(dense, NUM_CLASSES),
        )
        # torch.channels_last lets oneDNN / cuDNN pick faster convolution kernels; the weights are the same.
        self.memory_format = memory_format
        self.to(memory_format=self.memory_format)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x.contiguous(memory_format=self.memory_format)))


ARCHITECTURES: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "mlp": (MLP, ("hidden",)),
    "cnn": (CNN, ("filters", "blocks", "kernel_size", "dense", "dropout")),
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
