"""LeNet-5 as LeCun, Bottou, Bengio and Haffner (1998) describe it, with a linear output layer for cross-entropy."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import Tensor, nn

from mnist_lit.models.base import IMAGE_SIZE, NetworkConfig

PAPER_INPUT = 32  # the paper's input side: C5's 5x5 kernels then cover S4's whole map


@dataclasses.dataclass
class LeNet5Config(NetworkConfig):
    """LeNet-5 has no settings of its own: its layers are the paper's (conf/model/lenet5.yaml builds on this)."""

    _target_: str = "mnist_lit.models.lenet5.LeNet5"
    arch: str = "lenet5"
    name: str = "lenet5"


class LeNet5(nn.Module):
    """The 28x28 image padded to 32x32; C1 6@5x5 (28x28), S2 2x2 subsampling (14x14), C3 16@5x5 (10x10),
    S4 (5x5), C5 120@5x5 (1x1), F6 84, 10 outputs; tanh after C1, C3, C5 and F6.

    As in the paper, the subsampling layers average 2x2 blocks and C5 is a convolution that covers
    its whole 5x5 input. Three simplifications, as in most modern descriptions: the subsampling
    layers have no trainable coefficient and bias of their own, C3 connects to all six maps of S2
    (the paper's table connects each to a subset), and the output is a linear layer whose logits go
    to cross-entropy (the paper's is a layer of Euclidean radial basis units). 61,706 parameters.

    Other inputs: images smaller than 32x32 are padded to it; larger ones keep their size, and C5's maps
    are then larger than 1x1 and flattened into F6. ``channels`` feed C1.
    """

    Config = LeNet5Config

    def __init__(self, channels: int = 1, image_size: int = IMAGE_SIZE, **options: Any) -> None:
        super().__init__()
        c = LeNet5Config(**options)
        pad = max(0, PAPER_INPUT - image_size)
        side = image_size + pad
        for kernel, pool in ((5, 2), (5, 2), (5, 1)):  # C1 S2, C3 S4, C5
            side = (side - kernel + 1) // pool
        self.features = nn.Sequential(
            # 28x28 -> 32x32: the paper's input, so that strokes reach C1's receptive fields
            nn.ZeroPad2d((pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)),
            nn.Conv2d(channels, 6, 5),  # C1
            nn.Tanh(),
            nn.AvgPool2d(2),  # S2
            nn.Conv2d(6, 16, 5),  # C3
            nn.Tanh(),
            nn.AvgPool2d(2),  # S4
            nn.Conv2d(16, 120, 5),  # C5
            nn.Tanh(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(120 * side * side, 84), nn.Tanh(), nn.Linear(84, c.num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
