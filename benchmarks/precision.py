"""``python -m benchmarks.precision``: one convolution's forward and backward pass in float32 and under bf16 autocast.

What ``trainer.precision=auto`` decides on: where the CPU has no native bf16 (no AVX512_BF16 or AMX-BF16),
bf16 is emulated and the same work takes several times as long.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from mnist_lit.precision import choose_precision, cpu_device


def step(images: torch.Tensor, weight: torch.Tensor, bf16: bool) -> None:
    """A 3x3 convolution forward and backward, as one layer of the CNN trains."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = F.conv2d(images, weight, padding=1)
    out.float().sum().backward()


def seconds_per_step(bf16: bool, batch: int, channels: int, repeats: int) -> float:
    """Median seconds of ``repeats`` steps, after one warm-up step."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, channels, 28, 28, generator=generator, requires_grad=True)
    weight = torch.randn(channels, channels, 3, 3, generator=generator, requires_grad=True)
    step(images, weight, bf16)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step(images, weight, bf16)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main() -> None:
    """Print both times, their ratio and what ``trainer.precision=auto`` picks on this CPU."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    fp32 = seconds_per_step(False, args.batch, args.channels, args.repeats)
    bf16 = seconds_per_step(True, args.batch, args.channels, args.repeats)
    device = cpu_device(torch.cpu.get_capabilities())
    print(f"conv 3x3, {args.channels} -> {args.channels} channels, batch {args.batch}, 28x28, forward + backward")
    print(f"float32 {fp32:.3f} s, bf16 autocast {bf16:.3f} s: bf16 takes {bf16 / fp32:.2f}x as long")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {device.description}")
    print(f"trainer.precision=auto picks {choose_precision('auto', device).precision} here")


if __name__ == "__main__":
    main()
