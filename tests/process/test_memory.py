"""keep_freed_memory: freed tensor memory is reused, not faulted in again from the kernel (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")


# Allocates and frees a 64 MiB tensor 10 times to settle the heap, then 20 times more, and prints
# whether the setting was applied and the minor page faults of those 20 rounds. glibc serves blocks
# that large with mmap and unmaps them on free, so by default every round faults in all 16,384 of
# its pages again. With the setting the heap grows a few times until a freed block fits the next
# tensor, and from then on it is reused: on the 2-core VM the faults stopped after 2 to 9 rounds
# (in 20 runs, some run two at a time), so a few late rounds may still fault and the bound allows
# for it.
SCRIPT = """
import resource, sys, torch
from mnist_lit.process.memory import keep_freed_memory
applied = keep_freed_memory(sys.argv[1] == "true")
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(2**24).sum()
before = faults()
for _ in range(20):
    torch.ones(2**24).sum()
print(applied, faults() - before)
"""


def page_faults(enabled: bool) -> tuple[bool, int]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(enabled).lower()], cwd=ROOT, capture_output=True, text=True, check=True
    )
    applied, faults = done.stdout.split()
    return applied == "True", int(faults)


def test_freed_memory_is_reused_instead_of_faulted_in_again():
    applied, kept = page_faults(True)
    if not applied:
        pytest.skip("this C library has no mallopt (not glibc)")
    default_applied, default = page_faults(False)
    assert not default_applied
    pages = 20 * 2**26 // 4096  # 16,384 a round
    assert default > pages // 2, default  # glibc's default: the pages come back from the kernel each time
    assert kept < pages // 4, kept  # at most a few rounds while the heap grows, then none
