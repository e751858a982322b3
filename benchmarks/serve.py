"""``make bench-serve``: the LitServe server's requests per second and latency, against the demo's server.

For each server (``--servers``: ``python -m mnist_lit.serve`` with the torch and the onnx backend, each with
batching on, ``max_batch_size=64``, and off, ``max_batch_size=1``; and ``python -m mnist_lit.demo``, one image per
forward pass), started on a free port of 127.0.0.1 in this run, on this machine: at concurrency 1, 8 and 64
(``--concurrency``), clients post the same PNG drawing (a 280x280 digit, prepared by each server as predict
prepares an image) over a new connection each, ``--requests`` requests or ``--seconds`` seconds per cell,
whichever ends first, after a warm-up. Prints a Markdown table: requests per second, p50 and p99 latency in
milliseconds, errors.
"""

from __future__ import annotations

import argparse
import http.client
import io
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 8, 64)
SERVERS = ("torch", "torch-unbatched", "onnx", "onnx-unbatched", "demo")  # the table's rows, in its order
STARTUP = 120  # seconds a server may take to load its model


def drawing() -> bytes:
    """A 280x280 PNG of a "7", black on white, as the demo's canvas sends it."""
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(70, 60), (210, 60), (120, 230)], fill=0, width=22)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, path: str, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "image/png"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def ready(process: subprocess.Popen, port: int, path: str, body: bytes) -> None:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} ended: {process.stderr.read()}")
        try:
            status = post(port, path, body)
        except OSError:
            time.sleep(0.2)
            continue
        if status != 200:
            raise RuntimeError(f"the server on port {port} answered {status}")
        return
    raise RuntimeError(f"no server on port {port} after {STARTUP} s")


def load(port: int, path: str, body: bytes, concurrency: int, requests: int, seconds: float) -> dict:
    """``requests`` posts (or as many as ``seconds`` allow) by ``concurrency`` clients; the figures."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    left = [requests]
    stop = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < stop:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            start = time.perf_counter()
            try:
                ok = post(port, path, body) == 200
            except OSError:
                ok = False
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed) if ok else errors.__setitem__(0, errors[0] + 1)

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([float("nan")])
    return {
        "rps": len(latencies) / wall,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "n": len(latencies),
        "errors": errors[0],
    }


def measure(name: str, command: list[str], path: str, args: argparse.Namespace, body: bytes) -> list[dict]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", *command, f"port={port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready(process, port, path, body)
        load(port, path, body, 8, 50, 10)  # warm-up
        rows = []
        for concurrency in args.concurrency:
            figures = load(port, path, body, concurrency, args.requests, args.seconds)
            rows.append({"server": name, "concurrency": concurrency, **figures})
            print(f"{name:<28} c={concurrency:<3} {figures}", file=sys.stderr, flush=True)
        return rows
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def commands(ckpt: str, onnx_path: Path) -> dict[str, tuple[str, list[str], str]]:
    """Each server by its ``--servers`` name: its row's name, its command, the address it answers at."""
    serve = ["mnist_lit.serve", f"ckpt_path={ckpt}", "host=127.0.0.1"]
    onnx = ["backend=onnx", f"onnx_path={onnx_path}"]
    return {
        "torch": ("serve torch, batching", [*serve, "max_batch_size=64"], "/predict"),
        "torch-unbatched": ("serve torch, no batching", [*serve, "max_batch_size=1"], "/predict"),
        "onnx": ("serve onnx, batching", [*serve, "max_batch_size=64", *onnx], "/predict"),
        "onnx-unbatched": ("serve onnx, no batching", [*serve, "max_batch_size=1", *onnx], "/predict"),
        "demo": ("demo (one image a pass)", ["mnist_lit.demo", f"ckpt_path={ckpt}", "host=127.0.0.1"], "/api/predict"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a checkpoint of this project")
    parser.add_argument("--requests", type=int, default=400, help="requests per cell at most")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per cell at most")
    parser.add_argument("--concurrency", type=int, nargs="+", default=CONCURRENCY, help="clients at once, per cell")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=SERVERS, help="the servers to measure")
    args = parser.parse_args()
    body = drawing()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        if any(name.startswith("onnx") for name in args.servers):
            subprocess.run(
                [sys.executable, "-m", "mnist_lit.export", f"ckpt_path={args.ckpt}", f"output={onnx_path}"],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        servers = commands(args.ckpt, onnx_path)
        rows = [row for name in args.servers for row in measure(*servers[name], args, body)]
    print("| server | concurrency | requests/s | p50 ms | p99 ms | requests | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['server']} | {r['concurrency']} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['n']} "
            f"| {r['errors']} |"
        )


if __name__ == "__main__":
    main()
