"""``python -m benchmarks.precision``: both precisions timed on the same batches, and what auto picks on this
machine."""

from __future__ import annotations

import torch

from benchmarks.precision import main as precision_benchmark
from mnist_lit.precision import choose_precision, cpu_device


def test_the_precision_benchmark_times_both_and_says_what_auto_picks(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["precision", "--batch", "2", "--channels", "4", "--repeats", "1"])
    precision_benchmark()
    out = capsys.readouterr().out
    assert "float32 " in out and "bf16 autocast " in out
    picked = choose_precision("auto", cpu_device(torch.cpu.get_capabilities())).precision
    assert out.splitlines()[-1] == f"trainer.precision=auto picks {picked} here"
