"""The LitServe server over HTTP: real servers on free ports of 127.0.0.1, their answers against mnist_lit.predict
for both backends, requests batched together, refusals, its limits (max_queue, timeout), and how SIGTERM and Ctrl-C
end it, sent to the server alone or, as a terminal sends Ctrl-C, to every process of its group."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from PIL import Image

from mnist_lit.config.checks import command_config
from mnist_lit.errors import ConfigError
from mnist_lit.export import export_onnx
from mnist_lit.predict import predict_images, prepare
from mnist_lit.serve import DigitAPI, make_server
from tests.conftest import digit_image, start_cli

STARTUP = 60  # seconds a server may take to load its model
SLOW = 3  # seconds SlowAPI's model takes over an image whose top-left pixel is lit


class RecordingAPI(DigitAPI):
    """The server's API, with each answer saying how many requests its forward pass answered."""

    def predict(self, x: Any) -> Any:
        return super().predict(x), len(x)

    def unbatch(self, output: Any) -> list:
        probabilities, size = output
        return [(p, size) for p in probabilities]

    def encode_response(self, output: Any) -> dict:
        probabilities, size = output
        return {**super().encode_response(probabilities), "batch_size": size}


class SlowAPI(DigitAPI):
    """The server's API, with a model that takes ``SLOW`` seconds over an image whose top-left pixel is lit (a
    prepared digit leaves it dark)."""

    def predict(self, x: Any) -> Any:
        if x[..., 0, 0].any():
            time.sleep(SLOW)
        return super().predict(x)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exchange(port: int, body: bytes, content_type: str, path: str = "/predict") -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def started(process: Any, port: int) -> str:
    """The server's first line, once it answers ``/health``."""
    line = process.stdout.readline()
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return line
        except OSError:
            pass
        time.sleep(0.2)
    ended(process)
    raise AssertionError(f"no server on port {port}: {line}{process.stderr.read()}")


def start_server(command: str, *args: str) -> Any:
    """``python -m <command> <args>`` in a session of its own: the server's processes are one group."""
    return start_cli(command, *args, start_new_session=True)


def stopped(process: Any, signum: int, group: bool) -> tuple[int, str]:
    """Send ``signum`` to the server (``group``: to every process of its group); its exit status and stderr, once
    it has ended, and every process of its group with it."""
    if group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=60)
        assert group_ends(process.pid), f"processes of the server's group outlived it: {err}"
    finally:
        ended(process)
    return process.returncode, err


def group_ends(pgid: int, seconds: float = 10) -> bool:
    """Whether no process is left in group ``pgid`` within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def ended(process: Any) -> None:
    """Kill what is left of a server's group."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait()


@pytest.fixture(scope="module")
def servers(trained, synthetic, tmp_path_factory):
    """Three servers, running: torch (RecordingAPI, batching up to 16); onnx without batching (python -m
    mnist_lit.serve); slow (SlowAPI without batching, at most 2 requests inside, each waiting for the model 1 s
    at most)."""
    ckpt = trained / "checkpoints/best.ckpt"
    onnx_path = tmp_path_factory.mktemp("serve") / "model.onnx"
    ports = {"torch": free_port(), "onnx": free_port(), "slow": free_port()}
    common = [f"ckpt_path={ckpt}", "batch_timeout=0.05", "max_body=1000000"]
    torch_args = ["RecordingAPI", *common, "max_batch_size=16", f"port={ports['torch']}"]
    slow_args = ["SlowAPI", f"ckpt_path={ckpt}", "max_batch_size=1", "max_queue=2", "timeout=1"]
    processes = {"torch": start_server("tests.test_serve", *torch_args),
                 "slow": start_server("tests.test_serve", *slow_args, f"port={ports['slow']}")}  # fmt: skip
    export_onnx(command_config("export", ckpt_path=str(ckpt), output=str(onnx_path), check_images=8,
                               data_dir=str(synthetic["data_dir"])))  # fmt: skip
    onnx_args = [f"port={ports['onnx']}", "backend=onnx", f"onnx_path={onnx_path}", "max_batch_size=1"]  # no batching
    processes["onnx"] = start_server("mnist_lit.serve", *common, *onnx_args)
    try:
        lines = {name: started(process, ports[name]) for name, process in processes.items()}
        yield {"ckpt": ckpt, **{name: (processes[name], ports[name], lines[name]) for name in processes}}
    finally:
        for process in processes.values():
            ended(process)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_answers_are_what_predict_says_about_the_same_image(servers, backend, tmp_path):
    _, port, line = servers[backend]
    assert line.startswith("Serving mlp") and "trained on mnist" in line and f"backend {backend}" in line
    assert f"http://127.0.0.1:{port}/predict" in line
    image = Image.fromarray(digit_image())
    image.save(tmp_path / "digit.png")
    row = predict_images(command_config("predict", ckpt_path=str(servers["ckpt"]), images=str(tmp_path), top_k=10))[0]
    expected = {str(row[f"top{k}"] if k > 1 else row["digit"]): row[f"p{k}"] if k > 1 else row["confidence"]
                for k in range(1, 11)}  # fmt: skip
    tolerance = 1e-6 if backend == "torch" else 1e-4  # onnxruntime's arithmetic is not torch's, bit for bit
    pixels = json.dumps(prepare(image).tolist()).encode()
    for body, content_type in ((png(image), "image/png"), (pixels, "application/json")):
        status, answer = exchange(port, body, content_type)
        assert status == 200, answer
        assert answer["class"] == str(row["digit"])
        assert answer["probability"] == pytest.approx(row["confidence"], abs=tolerance)
        assert answer["probabilities"] == pytest.approx(expected, abs=tolerance)


def test_requests_that_arrive_together_share_a_forward_pass(servers):
    _, port, _ = servers["torch"]
    body = png(Image.fromarray(digit_image()))
    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(lambda _: exchange(port, body, "image/png"), range(48)))
    assert all(status == 200 for status, _ in answers)
    sizes = [answer["batch_size"] for _, answer in answers]
    assert max(sizes) > 1 and max(sizes) <= 16
    assert len({answer["class"] for _, answer in answers}) == 1


@pytest.mark.parametrize(
    "body, content_type, status",
    [
        (b"[[1, 2", "application/json", 400),
        (json.dumps([[0] * 28] * 27).encode(), "application/json", 422),
        (json.dumps([[float("nan")] * 28] * 28).encode(), "application/json", 422),
        (json.dumps([[300] * 28] * 28).encode(), "application/json", 422),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * (20 * 2**20), "image/png", 413),
        (b"#!/bin/sh\necho not an image\n", "image/png", 400),
        (png(Image.new("L", (40, 40), 255)), "image/png", 422),
        (b"hello", "text/plain", 415),
    ],
    ids=["malformed-json", "wrong-shape", "nan", "out-of-range", "20MB", "not-an-image", "blank", "text"],
)
def test_bad_requests_get_a_4xx_and_the_server_goes_on(servers, body, content_type, status):
    _, port, _ = servers["torch"]
    try:
        got, answer = exchange(port, body, content_type)
        assert got == status and answer["error"] and "\n" not in answer["error"]
    except (BrokenPipeError, ConnectionResetError):
        assert status == 413  # refused from its Content-Length: the server closed before the client sent it all
    good, _ = exchange(port, png(Image.fromarray(digit_image())), "image/png")
    assert good == 200


def test_bad_settings_are_refused(servers):
    ckpt = str(servers["ckpt"])
    cases = [
        ({}, "ckpt_path is missing"),
        ({"ckpt_path": ckpt, "port": 80}, "port=80 is not allowed"),
        ({"ckpt_path": ckpt, "host": "example.org"}, "host='example.org' is not allowed"),
        ({"ckpt_path": ckpt, "backend": "tf"}, "backend='tf' is not allowed"),
        ({"ckpt_path": ckpt, "backend": "onnx"}, "onnx_path is missing"),
        ({"ckpt_path": ckpt, "backend": "onnx", "onnx_path": ckpt}, "is not an ONNX export"),
        ({"ckpt_path": ckpt, "batch_timeout": 0.5, "timeout": 0.1}, "batch_timeout=0.5 is not allowed"),
        ({"ckpt_path": ckpt, "threads": 0}, "threads=0 is not allowed"),
    ]
    for values, expected in cases:
        with pytest.raises(ConfigError, match=expected):
            make_server(command_config("serve", **values))


def prepared_digit(lit: bool = False) -> bytes:
    """The test digit, prepared, as the JSON the server reads; ``lit``: its top-left pixel lit (SlowAPI is slow)."""
    pixels = prepare(Image.fromarray(digit_image())).tolist()
    if lit:
        pixels[0][0] = 255
    return json.dumps(pixels).encode()


def test_a_request_waiting_for_the_model_past_timeout_gets_504_and_the_server_goes_on(servers):
    _, port, _ = servers["slow"]
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(exchange, port, prepared_digit(lit=True), "application/json")  # the model takes SLOW s
        time.sleep(1)
        status, _ = exchange(port, prepared_digit(), "application/json")  # queued behind it for more than 1 s
        assert status == 504
        assert first.result()[0] == 200
    assert exchange(port, prepared_digit(), "application/json")[0] == 200


def test_requests_past_max_queue_get_503_and_the_server_goes_on(servers):
    _, port, _ = servers["slow"]
    with ThreadPoolExecutor(2) as pool:
        inside = [pool.submit(exchange, port, prepared_digit(lit=True), "application/json") for _ in range(2)]
        time.sleep(1)
        status, answer = exchange(port, prepared_digit(), "application/json")  # a third: max_queue=2
        assert status == 503 and answer["error"] == "busy: 2 requests are waiting"
        assert sorted(future.result()[0] for future in inside) == [200, 504]  # the second waited past timeout
    assert exchange(port, prepared_digit(), "application/json")[0] == 200


@pytest.mark.parametrize(
    "server, signum, group, status, name",
    [
        ("onnx", signal.SIGTERM, False, 143, "SIGTERM"),
        ("torch", signal.SIGINT, True, 130, "Ctrl-C"),  # a terminal's Ctrl-C
        ("slow", signal.SIGTERM, True, 143, "SIGTERM"),
    ],
    ids=["sigterm", "ctrl-c-to-the-group", "sigterm-to-the-group"],
)
def test_sigterm_and_ctrl_c_stop_the_server_and_its_processes_with_one_line(
    servers, server, signum, group, status, name
):
    code, err = stopped(servers[server][0], signum, group)
    assert code == status and err.splitlines() == [f"Interrupted ({name}): the server stopped"], err


if __name__ == "__main__":  # a server of these tests: python -m tests.test_serve <API class> <serve's settings>
    import importlib
    import sys

    from omegaconf import DictConfig

    from mnist_lit import serve
    from mnist_lit.command import command

    api = getattr(importlib.import_module("tests.test_serve"), sys.argv.pop(1))  # importable by its workers

    @command("the server stopped", config="serve")
    def main(cfg: DictConfig) -> None:
        serve.serve(cfg, api)

    main()
