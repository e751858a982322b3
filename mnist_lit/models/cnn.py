"""The presentation's CNN with options for stronger ones: conv blocks, flatten or global pooling, dense, logits."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from mnist_lit.config.schema import setting
from mnist_lit.errors import ConfigError
from mnist_lit.models.base import IMAGE_SIZE, NetworkConfig


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


@dataclasses.dataclass
class CNNConfig(NetworkConfig):
    """The CNN's settings: the one place their types, ranges and defaults live (conf/model/cnn.yaml builds on it).

    The defaults build the presentation's network layer for layer.
    """

    _target_: str = "mnist_lit.models.cnn.CNN"
    arch: str = "cnn"
    name: str = "cnn"
    filters: int = setting(32, low=1, shape=True)  # filters of the first block; each further block doubles them
    blocks: int = setting(2, low=1, shape=True)
    kernel_size: int = setting(3, low=1, shape=True)
    dense: int = setting(128, low=1, shape=True)
    dropout: float = setting(0.5, low=0, high=1, high_open=True)  # before the output layer
    convs_per_block: int = setting(1, low=1, shape=True)  # valid convolutions before each block's pooling
    batch_norm: bool = setting(False, shape=True)  # after every convolution (then without bias) and the dense layer
    block_dropout: float = setting(0.0, low=0, high=1, high_open=True)  # after each block's pooling
    global_pool: bool = setting(False, shape=True)  # average each final map to one value instead of flattening
    channels_last: bool = True  # memory layout that lets oneDNN / cuDNN pick faster kernels; the same weights

    def __post_init__(self) -> None:
        feature_map_sizes(self.blocks, self.kernel_size, convs_per_block=self.convs_per_block)


class CNN(nn.Module):
    """Conv blocks (kxk convolutions, ReLU, 2x2 max-pooling), flatten, dense + ReLU, one logit per class, for
    ``channels`` x ``image_size`` x ``image_size`` images (MNIST's 1 x 28 x 28 by default).

    Block ``i`` has ``filters * 2**i`` filters: the default 32 and 2 blocks give the presentation's
    32 and 64. ``options`` are ``CNNConfig``'s settings; the stronger variants' options are all off by
    default, and then the layers are exactly the presentation's.
    """

    Config = CNNConfig

    def __init__(self, channels: int = 1, image_size: int = IMAGE_SIZE, **options: Any) -> None:
        super().__init__()
        c = CNNConfig(**options)
        side = feature_map_sizes(c.blocks, c.kernel_size, image_size, c.convs_per_block)[-1]
        layers: list[nn.Module] = []
        for block in range(c.blocks):
            width = c.filters * 2**block
            for _ in range(c.convs_per_block):
                layers.append(nn.Conv2d(channels, width, c.kernel_size, bias=not c.batch_norm))
                if c.batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU())
                channels = width
            layers.append(nn.MaxPool2d(2))
            if c.block_dropout:
                layers.append(nn.Dropout(c.block_dropout))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if c.global_pool else [nn.Flatten()]
        flat = channels if c.global_pool else channels * side * side
        head.append(nn.Linear(flat, c.dense, bias=not c.batch_norm))
        if c.batch_norm:
            head.append(nn.BatchNorm1d(c.dense))
        head += [nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(c.dense, c.num_classes)]
        self.classifier = nn.Sequential(*head)
        # torch.channels_last lets oneDNN / cuDNN pick faster convolution kernels; the weights are the same.
        self.memory_format = torch.channels_last if c.channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x.contiguous(memory_format=self.memory_format)))
