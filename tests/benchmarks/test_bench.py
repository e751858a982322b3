"""``make bench``'s machinery on synthetic data: both sides run, the table and JSON agree (no time is asserted)."""

from __future__ import annotations

import json
import math
import statistics
import sys

import pytest

from benchmarks import bench
from tests.conftest import N_TRAIN, synthetic_overrides


def test_bench_runs_both_sides_and_writes_its_table(synthetic, tmp_path, monkeypatch, capsys):
    output = tmp_path / "bench.json"
    # Each side trains in processes of its own; the command that starts them runs here.
    arguments = ["--models", "mlp", "--rounds", "1", "--epochs", "2", "--output", str(output)]
    monkeypatch.setattr(sys, "argv", ["bench.py", *arguments, *synthetic_overrides(synthetic)])
    bench.main()
    stdout = capsys.readouterr().out
    result = json.loads(output.read_text())
    assert {"cpu", "cores", "gpu", "torch", "lightning"} <= set(result["machine"])
    [row] = result["rows"]
    assert row["model"] == "mlp" and row["overrides"][0] == "model=mlp" and "data=synthetic" in row["overrides"]
    for side in ("project", "plain"):
        figures = row[side]
        assert len(figures["epoch_samples"]) == 1  # 1 round x (2 epochs - the warm-up)
        assert figures["epoch_seconds"] > 0 and figures["images_per_second"] > 0
        assert figures["startup_seconds"] > 0 and figures["peak_rss_mb"] > 0
    # both sides take every optimizer step of an epoch (the reference's are interleaved with the project's)
    assert row["train_images"] == N_TRAIN * 4 // 5 and row["steps_per_epoch"] == math.ceil(N_TRAIN * 4 // 5 / 32)
    # each project epoch is paired with the reference epoch trained alongside it
    pairs = zip(row["project"]["epoch_samples"], row["plain"]["epoch_samples"], strict=True)
    assert row["pair_ratios"] == [pytest.approx(p / q, rel=1e-2) for p, q in pairs]
    assert row["ratio"] == pytest.approx(statistics.median(row["pair_ratios"]), abs=1e-3)
    assert len(row["round_ratios"]) == 1
    assert result["table"] in stdout and "| mlp |" in result["table"]
    # the figures are labelled with the machine they came from
    assert result["machine"]["cpu"] in result["table"]


def test_every_preset_is_a_model_and_perf_fast_only_where_named():
    assert {name.removesuffix("-fast").removesuffix("-bf16") for name in bench.PRESETS} == {"mlp", "cnn"}
    for name, overrides in bench.PRESETS.items():
        assert overrides[0] == f"model={name.split('-')[0]}"
        assert ("perf=fast" in overrides) == name.endswith("-fast")


def test_bench_refuses_a_run_without_a_counted_epoch(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench.py", "--epochs", "1"])
    with pytest.raises(SystemExit) as stopped:
        bench.main()
    stderr = capsys.readouterr().err
    assert stopped.value.code == 2 and "--epochs=1" in stderr and "warm-up" in stderr
