"""The LitServe server over HTTP: real servers on free ports of 127.0.0.1, their answers against mnist_lit.predict
for both backends, requests batched together, refusals, and how SIGTERM and Ctrl-C end it."""

from __future__ import annotations

import http.client
import io
import json
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
    process.kill()
    raise AssertionError(f"no server on port {port}: {line}{process.stderr.read()}")


def stopped(process: Any, signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err


@pytest.fixture(scope="module")
def servers(trained, synthetic, tmp_path_factory):
    """A torch server (RecordingAPI, batching up to 16) and an onnx one without batching (python -m mnist_lit.serve),
    both running."""
    ckpt = trained / "checkpoints/best.ckpt"
    onnx_path = tmp_path_factory.mktemp("serve") / "model.onnx"
    ports = free_port(), free_port()
    common = [f"ckpt_path={ckpt}", "batch_timeout=0.05", "max_body=1000000"]
    torch_server = start_cli("tests.test_serve", *common, "max_batch_size=16", f"port={ports[0]}")
    export_onnx(command_config("export", ckpt_path=str(ckpt), output=str(onnx_path), check_images=8,
                               data_dir=str(synthetic["data_dir"])))  # fmt: skip
    onnx_args = [f"port={ports[1]}", "backend=onnx", f"onnx_path={onnx_path}", "max_batch_size=1"]  # no batching
    onnx_server = start_cli("mnist_lit.serve", *common, *onnx_args)
    lines = started(torch_server, ports[0]), started(onnx_server, ports[1])
    yield {"ckpt": ckpt, "torch": (torch_server, ports[0], lines[0]), "onnx": (onnx_server, ports[1], lines[1])}
    for process in (torch_server, onnx_server):
        if process.poll() is None:
            process.kill()
            process.wait()


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
    ]
    for values, expected in cases:
        with pytest.raises(ConfigError, match=expected):
            make_server(command_config("serve", **values))


@pytest.mark.parametrize("backend, signum, status, name", [("onnx", signal.SIGTERM, 143, "SIGTERM"),
                                                           ("torch", signal.SIGINT, 130, "Ctrl-C")])  # fmt: skip
def test_sigterm_and_ctrl_c_stop_the_server_with_one_line(servers, backend, signum, status, name):
    process, _, _ = servers[backend]
    code, err = stopped(process, signum)
    assert code == status and err.splitlines() == [f"Interrupted ({name}): the server stopped"], err


if __name__ == "__main__":  # the torch server of these tests: python -m tests.test_serve <serve's settings>
    from omegaconf import DictConfig

    from mnist_lit import serve
    from mnist_lit.command import command
    from tests.test_serve import RecordingAPI as Recording

    @command("the server stopped", config="serve")
    def main(cfg: DictConfig) -> None:
        serve.serve(cfg, Recording)

    main()
