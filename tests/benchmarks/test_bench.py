"""``make bench``'s machinery on synthetic data: both sides run, the table and JSON agree (no time is asserted)."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys

import pytest

from tests.conftest import N_TRAIN, ROOT, synthetic_overrides


def test_bench_runs_both_sides_and_writes_its_table(synthetic, tmp_path):
    output = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--models", "mlp", "mlp-fast", "--rounds", "1", "--epochs", "3",
         "--output", str(output), *synthetic_overrides(synthetic)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    assert {"cpu", "cores", "gpu", "torch", "lightning"} <= set(result["machine"])
    row, fast = result["rows"]  # the default path and perf=fast, each with its own reference
    assert row["model"] == "mlp" and row["overrides"][0] == "model=mlp" and "data=synthetic" in row["overrides"]
    assert fast["model"] == "mlp-fast" and "perf=fast" in fast["overrides"]
    assert fast["steps_per_epoch"] == row["steps_per_epoch"]
    for side in ("project", "plain"):
        figures = row[side]
        assert len(figures["epoch_samples"]) == 2  # 1 round x (3 epochs - the warm-up)
        assert figures["epoch_seconds"] > 0 and figures["images_per_second"] > 0
        assert figures["startup_seconds"] > 0 and figures["peak_rss_mb"] > 0
    # both sides take every optimizer step of an epoch (the reference's are interleaved with the project's)
    assert row["train_images"] == N_TRAIN * 4 // 5 and row["steps_per_epoch"] == math.ceil(N_TRAIN * 4 // 5 / 32)
    # each project epoch is paired with the reference epoch trained alongside it
    pairs = zip(row["project"]["epoch_samples"], row["plain"]["epoch_samples"], strict=True)
    assert row["pair_ratios"] == [pytest.approx(p / q, rel=1e-2) for p, q in pairs]
    assert row["ratio"] == pytest.approx(statistics.median(row["pair_ratios"]), abs=1e-3)
    assert len(row["round_ratios"]) == 1
    assert result["table"] in done.stdout and "| mlp |" in result["table"] and "| mlp-fast |" in result["table"]
    # the figures are labelled with the machine they came from
    assert result["machine"]["cpu"] in result["table"]


def test_bench_refuses_a_run_without_a_counted_epoch():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--epochs", "1"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2 and "--epochs=1" in done.stderr and "warm-up" in done.stderr
