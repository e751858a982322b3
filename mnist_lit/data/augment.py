"""Image transforms on whole batches: training augmentation, test-time augmentation, the shifted test split.

Every transform works on uint8-range images (N, C, H, W), or (N, H, W) of one channel, black background,
before normalisation, and gives images of the shape it got, so that pixels moved in from outside the image
are background (zero) and ``ImageSpec.normalize`` stays the one place where images become network input.
Random parameters are drawn per image by kornia, from torch's global generator (which ``seed_everything``
seeds); the fixed transforms take a ``torch.Generator`` or no randomness at all.
"""

from __future__ import annotations

import math

import kornia.augmentation as K
import kornia.morphology
import torch
from kornia.geometry.transform import warp_affine
from torch import Tensor, nn

from mnist_lit.data.dataset import channels_first
from mnist_lit.errors import ConfigError

AUGMENTATIONS = ("affine", "elastic")
SHIFTED_SEED = 2024  # the shifted test split's parameters: the same images for every run and machine


def like(out: Tensor, images: Tensor) -> Tensor:
    """``out`` (N, C, H, W) in the shape of ``images``: without the channel axis where ``images`` had none."""
    return out.squeeze(1) if images.dim() == 3 else out


class Augment(nn.Module):
    """Random per-image transform of uint8-range images (N, [C,] H, W) -> float of that shape, 0-255 range."""

    def __init__(self, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, images: Tensor) -> Tensor:
        out = self.transform(channels_first(images).float())
        return like(out, images).clamp_(0.0, 255.0)


def build_augmentation(kind: str | None) -> Augment | None:
    """The training augmentation ``data.augment`` names: None, ``affine`` or ``elastic``."""
    if kind is None:
        return None
    if kind == "affine":
        # Rotation +-10 degrees, shifts up to 10% (2.8 px), zoom 0.9-1.1, shear +-8 degrees: digits
        # as a scanner might see them, kept inside the 28x28 frame.
        transform = K.RandomAffine(
            degrees=10.0, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=8.0, p=1.0, same_on_batch=False
        )
    elif kind == "elastic":
        # Simard et al. (2003): a random displacement field smoothed by a Gaussian (sigma 4 px)
        # and scaled by alpha. kornia's displacement is in [-1, 1] image coordinates (14 px a unit).
        transform = K.RandomElasticTransform(
            kernel_size=(21, 21), sigma=(4.0, 4.0), alpha=(2.5, 2.5), p=1.0, same_on_batch=False
        )
    else:
        raise ConfigError(f"data.augment={kind!r} is not allowed: choose null (none), {' or '.join(AUGMENTATIONS)}")
    return Augment(transform)


def affine_matrices(angle: Tensor, scale: Tensor, shift: Tensor, size: int = 28) -> Tensor:
    """(N, 2, 3) pixel-space matrices: rotate by ``angle`` degrees and scale about the centre, then shift (px)."""
    theta = angle * (math.pi / 180.0)
    cos, sin = torch.cos(theta) * scale, torch.sin(theta) * scale
    centre = (size - 1) / 2.0
    tx = centre - cos * centre + sin * centre + shift[:, 0]
    ty = centre - sin * centre - cos * centre + shift[:, 1]
    return torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)


def apply_affine(images: Tensor, matrices: Tensor) -> Tensor:
    """uint8-range images (N, [C,] H, W) warped by per-image (N, 2, 3) matrices; float, 0-255, zero background."""
    x = channels_first(images).float()
    out = warp_affine(x, matrices.to(x), dsize=tuple(x.shape[-2:]), mode="bilinear", padding_mode="zeros")
    return like(out, images).clamp_(0.0, 255.0)


# Test-time augmentation: (rotation in degrees, scale, shift x px, shift y px); the first is the image itself.
TTA_TRANSFORMS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 1.0, 0.0, 0.0),
    (-6.0, 1.0, 0.0, 0.0),
    (6.0, 1.0, 0.0, 0.0),
    (0.0, 0.95, 0.0, 0.0),
    (0.0, 1.05, 0.0, 0.0),
    (0.0, 1.0, 1.0, 0.0),
    (0.0, 1.0, -1.0, 0.0),
    (0.0, 1.0, 0.0, 1.0),
    (0.0, 1.0, 0.0, -1.0),
)


def tta_views(images: Tensor) -> list[Tensor]:
    """The images under each of ``TTA_TRANSFORMS``: float, 0-255 range, of the images' shape each."""
    n, size = len(images), images.shape[-1]
    views = []
    for angle, scale, dx, dy in TTA_TRANSFORMS:
        matrices = affine_matrices(
            torch.full((n,), angle), torch.full((n,), scale), torch.tensor([[dx, dy]]).expand(n, 2), size
        )
        views.append(apply_affine(images, matrices.to(images.device)))
    return views


# The shifted test split: per image, a shift, a rotation, a scale and a stroke-width change.
SHIFT_PX, ROTATION_DEG, SCALE_RANGE = 3.0, 20.0, (0.8, 1.2)
STROKES = ("thinner", "same", "thicker")


def shifted_images(images: Tensor, seed: int = SHIFTED_SEED) -> Tensor:
    """The uint8 images (N, [C,] H, W) under a fixed, seeded transform each: uint8, of the same shape.

    Shifts of up to 3 px, rotations up to 20 degrees, scales 0.8-1.2 (uniform) and a 2x2 erosion,
    nothing, or 2x2 dilation (a third each): harder than anything the official test set holds,
    and the same images on every machine (the parameters come from a CPU generator).
    """
    n = len(images)
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    angle = uniform(-ROTATION_DEG, ROTATION_DEG, n)
    scale = uniform(*SCALE_RANGE, n)
    shift = uniform(-SHIFT_PX, SHIFT_PX, n, 2)
    stroke = torch.randint(0, len(STROKES), (n,), generator=generator)
    x = channels_first(images).float()
    kernel = torch.ones(2, 2, device=x.device)
    # Stroke width first (on the original pixels), then the geometry.
    thinner, thicker = kornia.morphology.erosion(x, kernel), kornia.morphology.dilation(x, kernel)
    pick = stroke.to(x.device).view(n, 1, 1, 1)
    x = torch.where(pick == 0, thinner, torch.where(pick == 2, thicker, x))
    out = apply_affine(x, affine_matrices(angle, scale, shift, images.shape[-1]).to(x.device))
    return like(out, images).round_().to(torch.uint8)
