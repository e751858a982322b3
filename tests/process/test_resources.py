"""Per-job figures in a process that runs several jobs (a reused sweep worker): each job its own memory peak."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

TWO_JOBS = """
import json
import numpy as np
from mnist_lit.process.resources import begin_job, peak_rss_mb
begin_job()
big = np.ones(40_000_000)  # 305 MiB touched by the first job
del big
first = peak_rss_mb()
begin_job()
small = np.ones(1_000_000)
print(json.dumps({"first": first, "second": peak_rss_mb()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a resettable memory peak is Linux's (VmHWM)")
def test_a_second_job_in_the_same_process_reports_its_own_peak_memory():
    done = subprocess.run([sys.executable, "-c", TWO_JOBS], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    peaks = json.loads(done.stdout)
    assert peaks["first"] > 300
    assert peaks["second"] < peaks["first"] - 250, peaks  # not the first job's peak carried over
