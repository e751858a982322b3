"""``make bench-serve`` (``python -m benchmarks.serve``): a row per server and concurrency, every request answered
(two of the five servers: the onnx one with batching, with the export it serves, and the demo's)."""

from __future__ import annotations

import sys

from benchmarks.serve import main

HEADER = "| server | concurrency | requests/s | p50 ms | p99 ms | requests | errors |"


def test_the_serving_benchmark_prints_a_row_per_server_and_concurrency(trained, monkeypatch, capsys):
    ckpt = trained / "checkpoints/best.ckpt"
    argv = ["serve.py", "--ckpt", str(ckpt), "--requests", "20", "--seconds", "2", "--concurrency", "1", "2",
            "--servers", "onnx", "demo"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [HEADER, "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [line.strip("| ").split(" | ") for line in lines[2:]]
    servers = ("serve onnx, batching", "demo (one image a pass)")
    assert [row[:2] for row in rows] == [[server, c] for server in servers for c in ("1", "2")]
    for _, _, rps, p50, p99, requests, errors in rows:
        assert float(rps) > 0 and 0 < float(p50) <= float(p99) and 0 < int(requests) <= 20 and errors == "0"
