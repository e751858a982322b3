"""``trainer.precision=auto``: bf16 autocast where the device computes in bf16 natively, else float32."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

AUTO = "auto"
BF16 = ("bf16-mixed", "bf16-true", "bf16")
FP16 = ("16-mixed", "16-true", "16")
# CPU features (as torch.cpu.get_capabilities() names them) with bf16 or fp16 arithmetic in hardware;
# without them oneDNN emulates the type and a CNN step takes several times as long as in float32.
CPU_BF16 = ("avx512_bf16", "amx_bf16")
CPU_FP16 = ("avx512_fp16", "amx_fp16")
CUDA_BF16 = (8, 0)  # Ampere and newer have bf16 tensor cores


@dataclass(frozen=True)
class Device:
    """What the training device can compute natively, and how to say so."""

    kind: str  # "cpu", "cuda" or "mps"
    description: str  # e.g. "CUDA compute capability 8.0", "CPU with AVX512_BF16"
    native_bf16: bool
    native_fp16: bool


@dataclass(frozen=True)
class Choice:
    """The precision Lightning gets, why, and a warning when an explicit request will be slow."""

    precision: str
    reason: str
    warning: str | None = None


def cpu_device(capabilities: Mapping[str, Any]) -> Device:
    """The CPU as ``torch.cpu.get_capabilities()`` reports it."""
    bf16 = [name.upper().replace("AMX_", "AMX-") for name in CPU_BF16 if capabilities.get(name)]
    fp16 = [name for name in CPU_FP16 if capabilities.get(name)]
    if bf16:
        description = f"this CPU ({' and '.join(bf16)})"
    else:
        best = next((name for name in ("avx512_f", "avx2", "avx") if capabilities.get(name)), None)
        has = f"{best.upper().removesuffix('_F')}, " if best else ""
        description = f"this CPU ({has}no AVX512_BF16 or AMX-BF16)"
    return Device("cpu", description, native_bf16=bool(bf16), native_fp16=bool(fp16))


def cuda_device(capability: tuple[int, int]) -> Device:
    """A CUDA GPU of ``torch.cuda.get_device_capability()``."""
    major, minor = capability
    return Device("cuda", f"CUDA compute capability {major}.{minor}", tuple(capability) >= CUDA_BF16, True)


def training_device(accelerator: str) -> Device:
    """The device Lightning will train on for ``trainer.accelerator`` (``auto`` takes a GPU when there is one)."""
    cuda = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    if cuda:
        return cuda_device(torch.cuda.get_device_capability())
    if accelerator in ("gpu", "mps", "auto") and torch.backends.mps.is_available():
        return Device("mps", "Apple MPS", native_bf16=False, native_fp16=True)
    return cpu_device(torch.cpu.get_capabilities())


def choose_precision(requested: str, device: Device) -> Choice:
    """``auto`` becomes bf16-mixed or 32-true for ``device``; anything else is kept, with a warning if slow there."""
    requested = str(requested)
    if requested == AUTO:
        native = "native" if device.native_bf16 else "not native"
        return Choice("bf16-mixed" if device.native_bf16 else "32-true", f"bf16 is {native} on {device.description}")
    auto = "bf16-mixed" if device.native_bf16 else "32-true"
    warning = None
    if requested in BF16 and not device.native_bf16:
        warning = f"bf16 is not native on {device.description}, so it is emulated"
    elif requested in FP16 and device.kind == "cpu" and not device.native_fp16:
        warning = "float16 is not native on this CPU (no AVX512_FP16 or AMX-FP16), so it is emulated"
    if warning:
        warning = f"trainer.precision={requested} will be slow: {warning}; trainer.precision=auto picks {auto} here"
    return Choice(requested, "as set", warning)


def precision_for(cfg: Any) -> Choice:
    """The precision for a training config's ``trainer.precision`` on the device ``trainer.accelerator`` picks."""
    trainer = cfg.get("trainer") or {}
    return choose_precision(
        trainer.get("precision", "32-true"), training_device(str(trainer.get("accelerator", "auto")))
    )


def resolved(precision: str, device: torch.device) -> str:
    """A run's ``trainer.precision`` as it applies on ``device`` (``auto`` chosen for it, else unchanged)."""
    return choose_precision(precision, training_device(device.type)).precision if str(precision) == AUTO else precision
