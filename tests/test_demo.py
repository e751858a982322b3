"""The draw-a-digit demo over HTTP: a real server on a free port, its answers against mnist_lit.predict, refusals,
many clients at once, and clients that stall or leave."""

from __future__ import annotations

import http.client
import io
import json
import signal
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageDraw

from mnist_lit.config.checks import command_config
from mnist_lit.demo import MAX_BODY, MAX_SIDE, DemoHandler, make_server
from mnist_lit.errors import ConfigError
from mnist_lit.predict import predict_images, prepare
from tests.conftest import MODELS, start_cli, train_checkpoint, train_in_process
from tests.data.test_image_folder import write_folder


@pytest.fixture(scope="module")
def ckpt(synthetic, tmp_path_factory):
    return train_checkpoint(synthetic, tmp_path_factory.mktemp("demo") / "cnn.ckpt", MODELS["cnn"])


def start(ckpt, **values):
    """A demo server on a free port of 127.0.0.1, serving in a thread; stop it with ``stop``."""
    server = make_server(command_config("demo", ckpt_path=str(ckpt), port=0, **values))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def stop(server) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture
def demo(ckpt, tmp_path):
    server = start(ckpt, save=str(tmp_path / "drawings"))
    yield server
    stop(server)


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of one request to the server."""
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post_png(server, path: str, png: bytes):
    return request(server, "POST", path, png, {"Content-Type": "image/png"})


def drawing(strokes: list[list[tuple[int, int]]], size: int = 280) -> bytes:
    """A PNG like the page's canvas: black strokes on white."""
    image = Image.new("RGBA", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for points in strokes:
        draw.line(points, fill="black", width=24, joint="curve")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


SEVEN = [[(80, 60), (200, 60), (120, 230)]]
ZERO = [[(140, 50), (200, 90), (210, 170), (150, 230), (90, 190), (80, 100), (140, 50)]]


def test_answers_are_what_predict_says_about_the_same_image(demo, ckpt, tmp_path):
    for name, strokes in (("seven", SEVEN), ("zero", ZERO)):
        png = drawing(strokes)
        status, headers, body = post_png(demo, "/api/predict", png)
        assert status == 200 and headers["Content-Type"] == "application/json"
        answer = json.loads(body)
        path = tmp_path / f"{name}.png"
        path.write_bytes(png)
        (row,) = predict_images(command_config("predict", ckpt_path=str(ckpt), images=str(path), top_k=10))
        assert answer["class"] == row["digit"] == str(answer["digit"]) and not answer["blank"]
        ranked = {row["digit"]: row["confidence"], **{row[f"top{k}"]: row[f"p{k}"] for k in range(2, 11)}}
        assert answer["probabilities"] == pytest.approx([ranked[str(d)] for d in range(10)], abs=1e-6)
        assert sum(answer["probabilities"]) == pytest.approx(1, abs=1e-5)
        prepared = prepare(Image.open(io.BytesIO(png)))
        assert answer["image"] == prepared.flatten().tolist()  # the 28x28 image the network received


def test_a_blank_canvas_gets_no_digit(demo):
    status, _, body = post_png(demo, "/api/predict", drawing([]))
    answer = json.loads(body)
    assert status == 200 and answer["blank"] and "digit" not in answer and set(answer["image"]) == {0}


def test_the_page_and_its_files_come_from_the_package(demo):
    status, headers, page = request(demo, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]  # the browser loads nothing from elsewhere
    text = page.decode()
    assert '<canvas id="pad"' in text and 'id="clear"' in text and "http://" not in text and "https://" not in text
    for path, kind in (("/demo.js", "text/javascript"), ("/demo.css", "text/css")):
        status, headers, body = request(demo, "GET", path)
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
        assert b"http://" not in body and b"https://" not in body
    status, _, body = request(demo, "GET", "/api/info")
    classes = [str(d) for d in range(10)]  # the checkpoint's class names
    assert status == 200 and json.loads(body) == {"model": "cnn_f8 (cnn.ckpt)", "save": True, "classes": classes}


def test_a_confirmed_drawing_is_saved_as_a_png_that_predict_reads(demo, ckpt, tmp_path):
    png = drawing(SEVEN)
    status, _, body = post_png(demo, "/api/save?label=7", png)
    saved = json.loads(body)
    folder = tmp_path / "drawings"
    assert status == 200 and saved["label"] == 7 and [p.name for p in folder.iterdir()] == [saved["saved"]]
    assert saved["saved"].startswith("7-") and (folder / saved["saved"]).read_bytes() == png
    status, _, again = post_png(demo, "/api/save?label=7", png)
    assert status == 200 and len(list(folder.iterdir())) == 2  # never over an earlier one
    _, _, answer = post_png(demo, "/api/predict", png)
    rows = predict_images(command_config("predict", ckpt_path=str(ckpt), images=str(folder)))
    assert [r["digit"] for r in rows] == [json.loads(answer)["class"]] * 2


def huge_png() -> bytes:
    out = io.BytesIO()
    Image.new("L", (MAX_SIDE + 1, 8), 255).save(out, format="PNG")  # a few hundred bytes, too many pixels
    return out.getvalue()


@pytest.mark.parametrize(
    "method, path, body, headers, status",
    [
        ("POST", "/api/predict", b"not a png", {"Content-Type": "image/png"}, 400),
        ("POST", "/api/predict", b"GIF89a" + bytes(40), {"Content-Type": "image/png"}, 400),
        ("POST", "/api/predict", "huge", {"Content-Type": "image/png"}, 413),
        ("POST", "/api/predict", "seven", {"Content-Type": "text/plain"}, 415),
        ("POST", "/api/predict", "seven", {"Content-Type": "image/png", "Content-Length": "12x"}, 400),
        ("POST", "/api/save?label=12", "seven", {"Content-Type": "image/png"}, 400),
        ("POST", "/api/save", "seven", {"Content-Type": "image/png"}, 400),
        ("POST", "/api/elsewhere", "seven", {"Content-Type": "image/png"}, 404),
        ("GET", "/../../etc/passwd", None, {}, 404),
        ("PUT", "/", b"x", {}, 405),
        ("DELETE", "/api/save", None, {}, 405),
    ],
)
def test_malformed_requests_are_refused_with_a_4xx(demo, method, path, body, headers, status, tmp_path):
    body = {"huge": huge_png(), "seven": drawing(SEVEN)}.get(body, body) if isinstance(body, str) else body
    got, _, answer = request(demo, method, path, body, headers)
    assert got == status and json.loads(answer)["error"]
    assert not (tmp_path / "drawings").exists() or not any((tmp_path / "drawings").iterdir())


def raw_exchange(server, data: bytes) -> bytes:
    """Send bytes as they are and read the answer until the server closes the connection."""
    with socket.create_connection(server.server_address[:2], timeout=30) as connection:
        connection.sendall(data)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def test_oversized_bodies_and_broken_requests_are_refused_unread(demo):
    # A Content-Length past the limit is refused from the headers: the body is never sent or read.
    head = f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n"
    assert raw_exchange(demo, head.encode()).startswith(b"HTTP/1.0 413")
    chunked = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert raw_exchange(demo, chunked).startswith(b"HTTP/1.0 411")
    no_length = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n"
    assert raw_exchange(demo, no_length).startswith(b"HTTP/1.0 411")
    too_long = b"GET / HTTP/1.1\r\nX-Padding: " + b"a" * 70_000 + b"\r\n\r\n"
    assert raw_exchange(demo, too_long).startswith(b"HTTP/1.0 431")
    head, _, body = raw_exchange(demo, b"GET / HTTP/9.x\r\nHost: x\r\n\r\n").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400") and json.loads(body)["error"] == "Bad request version ('HTTP/9.x')"


def test_64_clients_at_once_all_get_their_answer(demo):
    png, url = drawing(SEVEN), "http://{}:{}/api/predict".format(*demo.server_address[:2])
    together = threading.Barrier(64)

    def post(_: int) -> tuple[int, str]:
        together.wait()
        request = urllib.request.Request(url, data=png, headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())["class"]

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(post, range(64)))
    assert answers == [(200, answers[0][1])] * 64


@pytest.mark.parametrize(
    "leaves, line",
    [(False, "Request timed out: TimeoutError('timed out')"),
     (True, "Connection from 127.0.0.1 dropped: ConnectionAbortedError: the body ended after")],
    ids=["stalls", "leaves"],
)  # fmt: skip
def test_a_client_that_stalls_or_leaves_mid_request_is_one_line_and_the_others_are_served(
    ckpt, monkeypatch, capsys, leaves, line
):
    monkeypatch.setattr(DemoHandler, "timeout", 1)  # seconds a connection may stay silent
    server = start(ckpt)
    try:
        png = drawing(SEVEN)
        head = f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(png)}\r\n\r\n"
        client = socket.create_connection(server.server_address[:2], timeout=30)
        client.sendall(head.encode() + png[: len(png) // 2])
        if leaves:
            client.close()
        assert post_png(server, "/api/predict", png)[0] == 200  # another client, served meanwhile
        if not leaves:
            assert client.recv(1) == b""  # closed by the server once the client was silent for the timeout
            client.close()
        err, deadline = "", time.monotonic() + 10
        while not err and time.monotonic() < deadline:
            time.sleep(0.1)
            err += capsys.readouterr().err
    finally:
        stop(server)
    err += capsys.readouterr().err
    assert len(err.splitlines()) == 1 and line in err, err


def test_without_save_there_is_no_saving(ckpt):
    server = start(ckpt)
    try:
        assert server.server_address[0] == "127.0.0.1" and command_config("demo").host == "127.0.0.1"
        _, _, info = request(server, "GET", "/api/info")
        assert json.loads(info)["save"] is False
        status, _, _ = post_png(server, "/api/save?label=3", drawing(SEVEN))
        assert status == 404
    finally:
        stop(server)


def test_bad_settings_are_refused(ckpt, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        cases = [
            ({}, "ckpt_path is missing"),
            ({"ckpt_path": str(tmp_path / "none.ckpt")}, "is not allowed: no such file"),
            ({"ckpt_path": str(ckpt), "port": 70000}, "port=70000 is not allowed"),
            ({"ckpt_path": str(ckpt), "port": "http"}, "port='http' is not allowed"),
            ({"ckpt_path": str(ckpt), "save": str(a_file)}, f"{a_file} is a file, not a directory"),
            ({"ckpt_path": str(ckpt), "port": busy.getsockname()[1]}, "cannot be used"),
        ]
        for values, expected in cases:
            with pytest.raises(ConfigError, match=expected):
                make_server(command_config("demo", **values))
    finally:
        busy.close()


def test_a_model_of_images_the_page_cannot_draw_is_refused(tmp_path):
    run = tmp_path / "run"
    overrides = ("data=image_folder", f"data.root={write_folder(tmp_path / 'shapes', per_class=4)}", "model.hidden=8")
    train_in_process(run, *overrides, "trainer.max_epochs=1", "data.test_fraction=0.25")
    ckpt = run / "checkpoints" / "best.ckpt"
    with pytest.raises(ConfigError, match="its model takes 32x32 RGB images, and the demo draws 28x28 grayscale"):
        make_server(command_config("demo", ckpt_path=str(ckpt), port=0))


def test_ctrl_c_stops_the_server_with_one_line(ckpt):
    process = start_cli("mnist_lit.demo", f"ckpt_path={ckpt}", "port=0")
    try:
        line = process.stdout.readline()
        assert line.startswith("Demo at http://127.0.0.1:"), line + process.stderr.read()
        host, port = line.split("//")[1].split("/")[0].split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.close()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130 and err.splitlines() == ["Interrupted (Ctrl-C): the demo stopped"]
