"""``python -m benchmarks.speedrun``: the peer recipe and the project's speed run side by side (synthetic data)."""

from __future__ import annotations

import json
import sys

from benchmarks.speedrun import main, peer_network
from tests.conftest import synthetic_overrides


def test_peer_network_is_the_published_shape():
    import torch

    assert peer_network()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in peer_network().parameters()) == (25 * 24 + 24) + (24 * 9 * 32 + 32) + (
        800 * 256 + 256
    ) + (256 * 10 + 10)


def test_speedrun_bench_reports_both_sides(synthetic, tmp_path, monkeypatch, capsys):
    output = tmp_path / "speedrun.json"
    # The peer recipe trains here; each of the project's runs is a `python train.py` of its own.
    monkeypatch.setattr(sys, "argv", ["speedrun.py", "--seeds", "1", "--output", str(output),
                                      *synthetic_overrides(synthetic), "data.batch_size=64", "trainer.max_epochs=1",
                                      "model.filters=8"])  # fmt: skip
    main()
    stdout = capsys.readouterr().out
    rows = json.loads(output.read_text())["rows"]
    assert [r["side"] for r in rows] == ["peer recipe", "experiment=speedrun"]
    for row in rows:
        assert row["runs"] == 1 and 0 <= row["min_acc"] <= row["mean_acc"] <= 1 and row["mean_seconds"] > 0
    assert "| peer recipe | 1 |" in stdout and "| experiment=speedrun | 1 |" in stdout
