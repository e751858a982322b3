"""keep_freed_memory: freed tensor memory is reused, not faulted in again from the kernel (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

# Allocates and frees a 64 MiB tensor 5 times to settle the heap, then 9 times more, and prints
# whether the setting was applied and the minor page faults of those 9 rounds. glibc serves blocks
# that large with mmap and unmaps them on free, so by default every round faults in all 16,384 of
# its pages again; with the setting the freed block is reused (after 3 rounds here).
SCRIPT = """
import resource, sys, torch
from mnist_lit.memory import keep_freed_memory
applied = keep_freed_memory(sys.argv[1] == "true")
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(2**24).sum()
before = faults()
for _ in range(9):
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
    pages = 9 * 2**26 // 4096
    assert default > pages // 2, default  # glibc's default: the pages come back from the kernel each time
    assert kept < pages // 20, kept


def test_a_value_that_is_not_a_boolean_is_refused():
    from mnist_lit.errors import ConfigError
    from mnist_lit.memory import keep_freed_memory

    with pytest.raises(ConfigError, match="keep_freed_memory='yes' is not allowed: it must be true or false"):
        keep_freed_memory("yes")
