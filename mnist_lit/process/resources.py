"""What a training job cost its process: start-up time and peak memory, per job even in a reused process.

Hydra's joblib launcher runs a sweep's jobs in worker processes that it reuses, and the basic
launcher runs them one after another in one process; process-wide figures (time since the process
started, ``ru_maxrss``) would then grow from job to job. A job's clock starts when its process
started, or when it began if the process ran a job before; its memory peak is reset at its start.
"""

from __future__ import annotations

import os
import sys
import time

try:
    import resource
except ImportError:  # Windows has no getrusage
    resource = None

_IMPORTED = time.monotonic()
_job_started: float | None = None  # monotonic time the current job began
_jobs_begun = 0


def process_age() -> float:
    """Seconds since this process started (from /proc on Linux; elsewhere since this module was imported)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def _reset_peak_rss() -> bool:
    """Restart the kernel's count of peak memory (VmHWM) from the current size (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def begin_job() -> None:
    """Mark the start of a training job: its start-up clock and, in a reused process, its memory peak."""
    global _job_started, _jobs_begun
    now = time.monotonic()
    _job_started = now - process_age() if _jobs_begun == 0 else now
    if _jobs_begun > 0:
        _reset_peak_rss()
    _jobs_begun += 1


def jobs_begun() -> int:
    """How many jobs this process has begun: identifies the current one."""
    return _jobs_begun


def job_seconds() -> float:
    """Seconds since the current job began (since the process started when no job was marked)."""
    return time.monotonic() - _job_started if _job_started is not None else process_age()


def _vm_hwm_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mb() -> float | None:
    """Peak resident memory of the current job, in MiB; None where the platform cannot tell (Windows).

    Linux reads the resettable VmHWM; elsewhere ``ru_maxrss`` covers the whole process (KiB on
    Linux, bytes on macOS).
    """
    kib = _vm_hwm_kib()
    if kib is not None:
        return round(kib / 1024, 1)
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)
