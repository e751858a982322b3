"""Process-level settings that change no training result, applied in one place before training.

- ``keep_freed_memory``: freed tensor memory kept in the process instead of handed back to the kernel;
- ``skip_nvml_probe_without_gpu``: ``torch.cuda.is_available()`` without an NVML probe per call.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

import torch

log = logging.getLogger(__name__)

# mallopt(3) parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # the largest value mallopt's int takes: 2 GiB free at the heap's top


def keep_freed_memory(enabled: bool) -> bool:
    """With glibc's malloc (Linux), keep freed memory for reuse instead of returning it to the kernel.

    glibc serves blocks above 128 KiB (a threshold it raises as it goes, up to 32 MiB) with mmap and
    gives them back on free, and trims the heap's top once 128 KiB or more of it is free. A training
    step on the CPU allocates and frees activations and gradients of a few MiB each, so every step
    the kernel faults in and zeroes fresh pages for them (benchmarks/README.md has the cost). With
    mmap off and trimming off, the freed blocks are reused and the faults stop. The cost: the
    process keeps its peak memory until it exits, which training reaches anyway.
    Other platforms and C libraries are left as they are.

    ``enabled`` is the config key ``keep_freed_memory`` (checked by TrainSettings); returns whether it was applied.
    """
    if not enabled or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1
    log.debug("keep_freed_memory: %s", "applied" if applied else "refused by mallopt")
    return applied


def skip_nvml_probe_without_gpu() -> None:
    """Let ``torch.cuda.is_available()`` use its cheap check on machines without a GPU.

    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (to keep forked workers usable), which makes
    every ``is_available()`` load the NVML library again, and Adam asks on every step (the cost:
    benchmarks/README.md). With no GPU there is nothing to protect, so the probe's answer (checked
    once) is kept and the variable dropped.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and torch.cuda.device_count() == 0:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


def configure_process(keep_freed: bool) -> None:
    """Apply the process-level settings (``keep_freed`` is the config key ``keep_freed_memory``)."""
    keep_freed_memory(keep_freed)
    skip_nvml_probe_without_gpu()
